package ijseg;

import ij.ImagePlus;
import ij.measure.ResultsTable;

import java.util.List;
import java.util.Map;

/**
 * The ijseg engine as the IJSeg commands see it.
 *
 * <p>When Python hosts the JVM, ijseg registers an implementation (a JPype proxy holding the
 * loaded model) with {@link Bridge#setEngine}; otherwise {@link CommandLineEngine} runs the
 * {@code ijseg} command line on temporary TIFF files. Methods return {@code null} on success
 * and the error message otherwise, so that the message survives the trip from Python.
 */
public interface Engine {

	/**
	 * Segments one image: a 2-D plane or a stack of channels for the command line engine; for the
	 * in-process engine the whole image, of which it takes the current plane (2-D model) or the
	 * current frame's volume (3-D model).
	 *
	 * @param imp the input image
	 * @param options model, output (labels, mask or probabilities), threshold, seed, min, max,
	 *        watershed, fill, exclude, tile
	 * @param results receives the result image
	 * @return null, or what went wrong
	 */
	String predict(ImagePlus imp, Map<String, String> options, List<ImagePlus> results);

	/**
	 * Measures the objects of a label image as Analyze Particles does.
	 *
	 * @param labels instance labels (0 is background)
	 * @param intensity the image to take intensities from, or null
	 * @param table receives one row per object
	 * @return null, or what went wrong
	 */
	String measure(ImagePlus labels, ImagePlus intensity, ResultsTable table);

	/** A one-line description for the Log (engine kind, where it runs). */
	String describe();
}
