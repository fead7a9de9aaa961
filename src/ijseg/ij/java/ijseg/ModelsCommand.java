package ijseg;

import ij.IJ;
import ij.Macro;
import ij.Prefs;
import ij.gui.GenericDialog;
import ij.plugin.PlugIn;

import java.io.File;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Plugins &gt; IJSeg &gt; IJSeg Models: lists the models in a models folder, chooses the default
 * model of IJSeg Predict and its default output and threshold, and, for ImageJ running on its
 * own, the {@code ijseg} command line to call.
 *
 * <pre>
 * run("IJSeg Models", "folder=[/data/models] model=nuclei output=labels threshold=0.50");
 * </pre>
 *
 * A model is a folder written by {@code ijseg train} (with config.json), a bioimage.io bundle
 * folder (with rdf.yaml) or a bundle .zip. The list is printed to the Log window.
 */
public class ModelsCommand implements PlugIn {

	static final String COMMAND = "IJSeg Models";
	static final String PREF_MODEL = "ijseg.model";
	static final String PREF_FOLDER = "ijseg.models_folder";
	static final String PREF_EXECUTABLE = "ijseg.executable";
	static final String NONE = "(none)";

	@Override
	public void run(String arg) {
		String options = Macro.getOptions();
		String folder = Prefs.get(PREF_FOLDER, defaultFolder());
		if (options != null)
			folder = Macro.getValue(options, "folder", folder);
		List<File> models = list(new File(folder));
		String[] names = new String[Math.max(models.size(), 1)];
		names[0] = NONE;
		for (int i = 0; i < models.size(); i++)
			names[i] = models.get(i).getName();
		String current = new File(Prefs.get(PREF_MODEL, "")).getName();
		GenericDialog gd = new GenericDialog(COMMAND);
		gd.addStringField("Folder", folder, 40);
		gd.addChoice("Model", names, Arrays.asList(names).contains(current) ? current : names[0]);
		gd.addChoice("Output", PredictCommand.OUTPUTS, Prefs.get("ijseg.output", "labels"));
		gd.addNumericField("Threshold", Prefs.get("ijseg.threshold", Defaults.THRESHOLD), 2);
		gd.addStringField("Executable", Prefs.get(PREF_EXECUTABLE, ""), 40);
		gd.addMessage("Executable: the ijseg command line, used when ImageJ runs on its own\n"
				+ "(empty: ijseg.properties in the plugins folder, then the PATH).\n"
				+ "A changed folder lists its models the next time.");
		gd.showDialog();
		if (gd.wasCanceled())
			return;
		String newFolder = gd.getNextString().trim();
		int choice = gd.getNextChoiceIndex();
		String output = gd.getNextChoice();
		double threshold = gd.getNextNumber();
		String executable = gd.getNextString().trim();
		if (Double.isNaN(threshold) || threshold <= 0 || threshold >= 1) {
			Bridge.fail(COMMAND, "threshold must be between 0 and 1");
			return;
		}
		if (!newFolder.isEmpty() && !new File(newFolder).isDirectory()) {
			Bridge.fail(COMMAND, "models folder not found: " + newFolder);
			return;
		}
		if (!executable.isEmpty() && !new File(executable).canExecute()) {
			Bridge.fail(COMMAND, "not an executable file: " + executable);
			return;
		}
		Prefs.set(PREF_FOLDER, newFolder);
		if (!models.isEmpty() && newFolder.equals(folder))
			Prefs.set(PREF_MODEL, models.get(choice).getAbsolutePath());
		Prefs.set("ijseg.output", output);
		Prefs.set("ijseg.threshold", threshold);
		Prefs.set(PREF_EXECUTABLE, executable);
		List<File> listed = newFolder.equals(folder) ? models : list(new File(newFolder));
		IJ.log("IJSeg models in " + newFolder + ": " + (listed.isEmpty() ? "none" : ""));
		for (File m : listed)
			IJ.log("  " + m.getName() + " (" + kind(m) + ")");
		IJ.log("IJSeg default model: " + Prefs.get(PREF_MODEL, "none") + "; engine: " + Bridge.engine());
	}

	static String defaultFolder() {
		String env = System.getenv("IJSEG_MODELS");
		return env != null ? env : System.getProperty("user.home") + File.separator + "ijseg-models";
	}

	/** The models directly inside {@code folder}, sorted by name. */
	static List<File> list(File folder) {
		List<File> models = new ArrayList<>();
		File[] files = folder.listFiles();
		if (files == null)
			return models;
		Arrays.sort(files);
		for (File f : files)
			if (kind(f) != null)
				models.add(f);
		return models;
	}

	/** "ijseg model", "bioimage.io bundle" or null. */
	static String kind(File f) {
		if (f.isFile() && f.getName().toLowerCase().endsWith(".zip"))
			return "bioimage.io bundle";
		if (f.isDirectory() && new File(f, "config.json").isFile())
			return "ijseg model";
		if (f.isDirectory() && (new File(f, "rdf.yaml").isFile() || new File(f, "bioimageio.yaml").isFile()))
			return "bioimage.io bundle";
		return null;
	}
}
