package ijseg;

import ij.IJ;
import ij.ImagePlus;
import ij.WindowManager;
import ij.Macro;
import ij.Prefs;
import ij.process.StackStatistics;
import ij.gui.GenericDialog;
import ij.plugin.PlugIn;

import java.io.File;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Plugins &gt; IJSeg &gt; IJSeg Predict: segments the current image with an ijseg model.
 *
 * <pre>
 * run("IJSeg Predict", "model=[/data/model] output=labels threshold=0.50 seed=0 size=0-Infinity tile=0");
 * </pre>
 *
 * Seed threshold 0 (the default) uses the model's own, chosen on its validation images when it
 * was trained; a value between 0 and 1 replaces it.
 *
 * The result is a new image titled after the input: {@code blobs.tif} gives {@code blobs_labels}
 * (16-bit instance labels), {@code blobs_mask} (8-bit, objects 255; with an inverting LUT
 * unless Process &gt; Binary &gt; Options "Black background" is on, as ImageJ's masks) or
 * {@code blobs_prob} (32-bit, one channel per class). From a macro, options that are not given take the values shown here
 * (not the last ones used), except the model, which defaults to the one chosen with IJSeg
 * Models.
 */
public class PredictCommand implements PlugIn {

	static final String[] OUTPUTS = {"labels", "mask", "probabilities"};
	static final String COMMAND = "IJSeg Predict";

	/** The dialog's values. */
	public static final class Values {
		public String model, output, size;
		public double threshold, seed, tile;
		public boolean watershed, fill, exclude;
	}

	@Override
	public void run(String arg) {
		// not IJ.getImage(): without ImageJ's main window it ends the process when no image is open
		ImagePlus imp = WindowManager.getCurrentImage();
		if (imp == null) {
			Bridge.fail(COMMAND, "no image is open (open the image to segment first)");
			return;
		}
		String macroOptions = Macro.getOptions();
		boolean macro = macroOptions != null;
		Values v = macro ? fromMacro(macroOptions) : null;
		if (v == null)
			v = fromDialog(imp.getTitle(), macro);
		if (v == null)
			return;
		String model = v.model.trim();
		String size = v.size.trim();
		String problem = null;
		if (model.isEmpty())
			problem = "no model given (model=[/path/to/model], or choose one with IJSeg Models)";
		else if (!new File(model).exists())
			problem = "model not found: " + model;
		else if (Double.isNaN(v.threshold) || v.threshold <= 0 || v.threshold >= 1)
			problem = "threshold must be between 0 and 1";
		else if (Double.isNaN(v.seed) || v.seed < 0 || v.seed >= 1)
			problem = "seed threshold must be between 0 and 1 (0: the model's)";
		else if (Double.isNaN(v.tile) || v.tile < 0)
			problem = "tile must be 0 (automatic) or a size in pixels";
		long[] range = null;
		if (problem == null) {
			range = parseSize(size);
			if (range == null)
				problem = "size must be min-max in pixels, like 50-Infinity or 20-5000, got \"" + size + "\"";
		}
		if (problem != null) {
			Bridge.fail(COMMAND, problem);
			return;
		}
		Map<String, String> options = new LinkedHashMap<>();
		options.put("output", v.output);
		options.put("watershed", String.valueOf(v.watershed));
		options.put("fill", String.valueOf(v.fill));
		options.put("exclude", String.valueOf(v.exclude));
		options.put("model", model);
		options.put("threshold", String.valueOf(v.threshold));
		if (v.seed > 0) // else the model's own, chosen on its validation images when it was trained
			options.put("seed", String.valueOf(v.seed));
		options.put("min", String.valueOf(range[0]));
		options.put("max", String.valueOf(range[1]));
		options.put("tile", String.valueOf((long) v.tile));
		if (!macro) {
			Prefs.set(ModelsCommand.PREF_MODEL, model);
			Prefs.set("ijseg.output", v.output);
			Prefs.set("ijseg.threshold", v.threshold);
		}
		ImagePlus result = predict(imp, options);
		if (result != null)
			result.show();
	}

	/**
	 * The values of a macro's options where they are literal (see {@link MacroOptions}), read
	 * without building the dialog; null where the dialog must read them.
	 */
	public static Values fromMacro(String options) {
		if (MacroOptions.recording() || MacroOptions.mentions(options, "watershed", "fill", "exclude"))
			return null; // checkboxes: all off unless named, as the dialog takes them
		Values v = new Values();
		v.model = MacroOptions.literal(options, "model", null); // without it, the dialog's default
		v.output = MacroOptions.choice(options, "output", OUTPUTS, "labels");
		v.size = MacroOptions.literal(options, "size", "0-Infinity");
		Double threshold = MacroOptions.number(options, "threshold", Defaults.THRESHOLD, 2);
		Double seed = MacroOptions.number(options, "seed", 0, 2);
		Double tile = MacroOptions.number(options, "tile", 0, 0);
		if (v.model == null || v.output == null || v.size == null || threshold == null || seed == null || tile == null)
			return null;
		v.threshold = threshold;
		v.seed = seed;
		v.tile = tile;
		return v;
	}

	/**
	 * The values from the dialog: shown to the user, or in macro mode reading the macro's
	 * options by ImageJ's rules; null when it was canceled.
	 */
	public static Values fromDialog(String title, boolean macro) {
		GenericDialog gd = new GenericDialog(COMMAND);
		gd.addStringField("Model", Prefs.get(ModelsCommand.PREF_MODEL, ""), 40);
		gd.addChoice("Output", OUTPUTS, macro ? "labels" : Prefs.get("ijseg.output", "labels"));
		gd.addNumericField("Threshold", macro ? Defaults.THRESHOLD : Prefs.get("ijseg.threshold", Defaults.THRESHOLD), 2, 6,
			"foreground probability");
		gd.addNumericField("Seed threshold", 0, 2, 6, "3-class models: interior probability of seeds (0: the model's)");
		gd.addStringField("Size", "0-Infinity", 14);
		gd.addCheckbox("Watershed (split touching objects of binary models)", false);
		gd.addCheckbox("Fill holes", false);
		gd.addCheckbox("Exclude objects on edges", false);
		gd.addNumericField("Tile", 0, 0, 6, "pixels (0: automatic)");
		gd.addMessage("Size in pixels (voxels for a 3-D model), as min-max. Input: " + title);
		gd.showDialog();
		if (gd.wasCanceled())
			return null;
		Values v = new Values();
		v.model = gd.getNextString();
		v.output = gd.getNextChoice();
		v.threshold = gd.getNextNumber();
		v.seed = gd.getNextNumber();
		v.size = gd.getNextString();
		v.watershed = gd.getNextBoolean();
		v.fill = gd.getNextBoolean();
		v.exclude = gd.getNextBoolean();
		v.tile = gd.getNextNumber();
		return v;
	}

	/**
	 * Runs the engine on {@code imp}; returns the titled, calibrated result, or null after
	 * reporting the error.
	 */
	static ImagePlus predict(ImagePlus imp, Map<String, String> options) {
		List<ImagePlus> results = new ArrayList<>();
		Engine engine = Bridge.getEngine();
		IJ.showStatus(COMMAND + ": " + imp.getTitle());
		String error;
		try {
			error = engine.predict(imp, options, results);
		} catch (RuntimeException e) {
			error = e.getMessage() != null ? e.getMessage() : e.toString();
		}
		IJ.showStatus("");
		if (error == null && results.isEmpty())
			error = "the engine returned no image";
		if (error != null) {
			Bridge.fail(COMMAND, error);
			return null;
		}
		ImagePlus out = results.get(0);
		String output = options.get("output");
		String suffix = "probabilities".equals(output) ? "_prob" : "_" + output;
		out.setTitle(Bridge.stem(imp.getTitle()) + suffix);
		Bridge.copyCalibration(imp, out);
		if ("labels".equals(output)) {
			double max = out.getStackSize() > 1 ? new StackStatistics(out).max : out.getStatistics().max;
			out.setDisplayRange(0, Math.max(max, 1));
		} else if ("mask".equals(output) && out.getProcessor().isBinary() && !Prefs.blackBackground) {
			// an ImageJ mask: objects 255 shown black on white (as Convert to Mask makes them), so
			// that Analyze Particles and the binary commands take the objects as foreground
			out.getProcessor().invertLut();
		}
		return out;
	}

	/** "50-Infinity" gives {50, 0}, "20-500" {20, 500}, "30" {30, 0}; null when unreadable. */
	static long[] parseSize(String size) {
		String[] parts = size.split("-", 2);
		try {
			double lo = Double.parseDouble(parts[0].trim());
			double hi = parts.length < 2 ? Double.POSITIVE_INFINITY : parseBound(parts[1].trim());
			if (lo < 0 || hi < lo)
				return null;
			return new long[] {(long) Math.ceil(lo), Double.isInfinite(hi) ? 0 : (long) Math.floor(hi)};
		} catch (NumberFormatException e) {
			return null;
		}
	}

	private static double parseBound(String s) {
		if (s.equalsIgnoreCase("infinity") || s.equalsIgnoreCase("inf"))
			return Double.POSITIVE_INFINITY;
		return Double.parseDouble(s);
	}
}
