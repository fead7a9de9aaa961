package ijseg;

import ij.IJ;
import ij.ImagePlus;
import ij.WindowManager;
import ij.gui.GenericDialog;
import ij.measure.ResultsTable;
import ij.plugin.PlugIn;

/**
 * Plugins &gt; IJSeg &gt; IJSeg Measure: measures every object of a label image and shows the
 * table in the Results window, with Analyze Particles' column names.
 *
 * <pre>
 * run("IJSeg Measure", "labels=blobs_labels intensity=blobs.tif");
 * </pre>
 *
 * {@code intensity=None} leaves the intensity columns out. The Results table is replaced.
 */
public class MeasureCommand implements PlugIn {

	static final String COMMAND = "IJSeg Measure";
	static final String NONE = "None";

	@Override
	public void run(String arg) {
		int[] ids = WindowManager.getIDList();
		if (ids == null) {
			Bridge.fail(COMMAND, "no image is open (open a label image first)");
			return;
		}
		String[] titles = new String[ids.length];
		String[] withNone = new String[ids.length + 1];
		withNone[0] = NONE;
		for (int i = 0; i < ids.length; i++) {
			titles[i] = WindowManager.getImage(ids[i]).getTitle();
			withNone[i + 1] = titles[i];
		}
		ImagePlus current = WindowManager.getCurrentImage();
		String labelDefault = current != null ? current.getTitle() : titles[0];
		GenericDialog gd = new GenericDialog(COMMAND);
		gd.addChoice("Labels", titles, labelDefault);
		gd.addChoice("Intensity", withNone, NONE);
		gd.showDialog();
		if (gd.wasCanceled())
			return;
		ImagePlus labels = WindowManager.getImage(ids[gd.getNextChoiceIndex()]);
		int k = gd.getNextChoiceIndex();
		ImagePlus intensity = k == 0 ? null : WindowManager.getImage(ids[k - 1]);
		ResultsTable table = measure(labels, intensity);
		if (table != null)
			table.show("Results");
	}

	/** Measures {@code labels}; null after reporting the error. */
	static ResultsTable measure(ImagePlus labels, ImagePlus intensity) {
		String problem = null;
		if (labels.getBitDepth() == 24)
			problem = labels.getTitle() + " is an RGB image, not a label image";
		else if (intensity != null && (intensity.getWidth() != labels.getWidth()
				|| intensity.getHeight() != labels.getHeight()))
			problem = "intensity image " + intensity.getTitle() + " is " + intensity.getWidth() + "x"
					+ intensity.getHeight() + " but the labels " + labels.getTitle() + " are " + labels.getWidth()
					+ "x" + labels.getHeight();
		if (problem != null) {
			Bridge.fail(COMMAND, problem);
			return null;
		}
		ResultsTable table = ResultsTable.getResultsTable();
		table.reset();
		String error;
		try {
			Engine engine = Bridge.getEngine();
			error = engine.measure(labels, intensity, table);
		} catch (RuntimeException e) {
			error = e.getMessage() != null ? e.getMessage() : e.toString();
		}
		if (error != null) {
			table.reset();
			Bridge.fail(COMMAND, error);
			return null;
		}
		return table;
	}
}
