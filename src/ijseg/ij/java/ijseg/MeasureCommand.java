package ijseg;

import ij.IJ;
import ij.ImagePlus;
import ij.Macro;
import ij.WindowManager;
import ij.gui.GenericDialog;
import ij.measure.ResultsTable;
import ij.plugin.PlugIn;

import java.util.Arrays;

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
		for (int i = 0; i < ids.length; i++)
			titles[i] = WindowManager.getImage(ids[i]).getTitle();
		String options = Macro.getOptions();
		int[] chosen = options != null ? fromMacro(options, titles) : null;
		if (chosen == null) {
			ImagePlus current = WindowManager.getCurrentImage();
			chosen = fromDialog(titles, current != null ? current.getTitle() : titles[0]);
		}
		if (chosen == null)
			return;
		ImagePlus labels = WindowManager.getImage(ids[chosen[0]]);
		ImagePlus intensity = chosen[1] < 0 ? null : WindowManager.getImage(ids[chosen[1]]);
		ResultsTable table = measure(labels, intensity);
		if (table != null)
			table.show("Results");
	}

	/**
	 * The indices in {@code titles} of the label image and of the intensity image (-1: None)
	 * named by a macro's options where they are literal titles (see {@link MacroOptions}), read
	 * without building the dialog; null where the dialog must read them.
	 */
	public static int[] fromMacro(String options, String[] titles) {
		if (MacroOptions.recording())
			return null;
		String[] withNone = withNone(titles);
		String labels = MacroOptions.choice(options, "labels", titles, null); // without it, the dialog's default
		String intensity = MacroOptions.choice(options, "intensity", withNone, NONE);
		if (labels == null || intensity == null)
			return null;
		// the dialog's choice takes the first item of that title, and None before an image titled so
		return new int[] {Arrays.asList(titles).indexOf(labels), Arrays.asList(withNone).indexOf(intensity) - 1};
	}

	/** The same from the dialog (shown, or reading a macro's options); null when it was canceled. */
	public static int[] fromDialog(String[] titles, String labelDefault) {
		GenericDialog gd = new GenericDialog(COMMAND);
		gd.addChoice("Labels", titles, labelDefault);
		gd.addChoice("Intensity", withNone(titles), NONE);
		gd.showDialog();
		if (gd.wasCanceled())
			return null;
		return new int[] {gd.getNextChoiceIndex(), gd.getNextChoiceIndex() - 1};
	}

	private static String[] withNone(String[] titles) {
		String[] items = new String[titles.length + 1];
		items[0] = NONE;
		System.arraycopy(titles, 0, items, 1, titles.length);
		return items;
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
