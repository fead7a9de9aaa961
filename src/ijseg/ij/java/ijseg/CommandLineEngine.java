package ijseg;

import ij.IJ;
import ij.ImagePlus;
import ij.Prefs;
import ij.io.FileSaver;
import ij.measure.ResultsTable;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.stream.Stream;

/**
 * The engine of an ImageJ that runs on its own: each call runs the {@code ijseg} command line
 * on temporary TIFF files (written and read by ImageJ, calibration included) and deletes them.
 *
 * <p>The commands run in one {@code ijseg serve} process kept for the ImageJ session ({@link Server}),
 * so TensorFlow and the models load once; where that cannot start, in an {@code ijseg} process
 * per call.
 *
 * <p>The executable is, in this order: the Java property {@code ijseg.executable}, the
 * environment variable {@code IJSEG_EXECUTABLE}, the one set with IJSeg Models, the
 * {@code executable=} line of {@code ijseg.properties} in the plugins folder (written by
 * {@code ijseg fiji install}), then {@code ijseg} on the PATH.
 */
public class CommandLineEngine implements Engine {

	@Override
	public String describe() {
		String exe = executable();
		String server = Server.describe();
		return "ijseg command line (" + (exe == null ? "not found" : exe) + (server == null ? "" : ", " + server) + ")";
	}

	@Override
	public String predict(ImagePlus imp, Map<String, String> options, List<ImagePlus> results) {
		String exe = executable();
		if (exe == null)
			return notFound();
		File dir = null;
		try {
			dir = Files.createTempDirectory("ijseg-").toFile();
			File input = new File(dir, "input.tif");
			if (!save(Bridge.input(imp, false), input))
				return "cannot write a temporary TIFF in " + dir;
			String output = options.get("output");
			List<String> cmd = new ArrayList<>();
			cmd.add(exe);
			cmd.add("-q");
			cmd.add("predict");
			add(cmd, "--model", options.get("model"));
			add(cmd, "--input", input.getPath());
			add(cmd, "--out", new File(dir, "out").getPath());
			add(cmd, "--output", output);
			if (imp.getNSlices() > 1)  // a 2-D model segments the current plane, a 3-D one the volume
				add(cmd, "--plane", String.valueOf(imp.getZ()));
			if (imp.getNChannels() > 1 && imp.getNChannels() < imp.getStackSize())  // of a hyperstack
				add(cmd, "--channel", String.valueOf(imp.getC()));
			add(cmd, "--threshold", options.get("threshold"));
			add(cmd, "--seed-threshold", options.get("seed"));
			add(cmd, "--min-size", options.get("min"));
			add(cmd, "--max-size", options.get("max"));
			if ("true".equals(options.get("watershed")))
				cmd.add("--watershed");
			if ("true".equals(options.get("fill")))
				cmd.add("--fill-holes");
			if ("true".equals(options.get("exclude")))
				cmd.add("--clear-border");
			String tile = options.get("tile");
			if (tile != null && !"0".equals(tile))
				add(cmd, "--tile", tile);
			String error = execute(cmd);
			if (error != null)
				return error;
			String suffix = "probabilities".equals(output) ? "_prob.tif" : "_" + output + ".tif";
			File result = new File(new File(dir, "out"), "input" + suffix);
			ImagePlus out = IJ.openImage(result.getPath());
			if (out == null)
				return "ijseg wrote no readable " + result.getName();
			results.add(out);
			return null;
		} catch (IOException e) {
			return "cannot run ijseg: " + e.getMessage();
		} finally {
			delete(dir);
		}
	}

	@Override
	public String measure(ImagePlus labels, ImagePlus intensity, ResultsTable table) {
		String exe = executable();
		if (exe == null)
			return notFound();
		File dir = null;
		try {
			dir = Files.createTempDirectory("ijseg-").toFile();
			File labelFile = new File(dir, "labels.tif");
			File csv = new File(dir, "table.csv");
			if (!save(Bridge.input(labels, true), labelFile))
				return "cannot write a temporary TIFF in " + dir;
			List<String> cmd = new ArrayList<>();
			cmd.add(exe);
			cmd.add("-q");
			cmd.add("measure");
			add(cmd, "--labels", labelFile.getPath());
			if (intensity != null) {
				File intensityFile = new File(dir, "intensity.tif");
				// a label stack: the intensity's volume; a label image: the intensity's current plane
				ImagePlus values = labels.getNSlices() > 1 ? Bridge.input(intensity, true) : Bridge.plane(intensity);
				if (!save(values, intensityFile))
					return "cannot write a temporary TIFF in " + dir;
				add(cmd, "--intensity", intensityFile.getPath());
			}
			add(cmd, "--out", csv.getPath());
			String error = execute(cmd);
			if (error != null)
				return error;
			ResultsTable read = ResultsTable.open(csv.getPath());
			if (read == null)
				return "ijseg wrote no readable table";
			String[] headings = read.getHeadings();
			for (int row = 0; row < read.size(); row++) {
				table.incrementCounter();
				for (String h : headings) {
					if (h.trim().isEmpty())
						continue;
					if (read.columnExists(h))
						table.addValue(h, read.getValue(h, row));
					else if ("Label".equals(h))  // ResultsTable.open makes a "Label" column row labels
						table.addValue(h, Double.parseDouble(read.getLabel(row)));
				}
			}
			return null;
		} catch (IOException e) {
			return "cannot run ijseg: " + e.getMessage();
		} finally {
			delete(dir);
		}
	}

	/** Saves a copy (saving renames an ImagePlus after its file), calibration included. */
	private static boolean save(ImagePlus imp, File file) {
		ImagePlus copy = new ImagePlus(imp.getTitle(), imp.getStack());
		copy.setDimensions(imp.getNChannels(), imp.getNSlices(), imp.getNFrames());
		copy.setCalibration(imp.getCalibration());
		return new FileSaver(copy).saveAsTiff(file.getPath());
	}

	/** Adds {@code flag value}; an option not given (null) is left to the model's own value. */
	private static void add(List<String> cmd, String flag, String value) {
		if (value == null)
			return;
		cmd.add(flag);
		cmd.add(value);
	}

	/** Runs the command, in the session's {@code ijseg serve} process if one can run, else as a
	 * process of its own; null on success, else the error it printed (or its exit code). */
	private static String execute(List<String> cmd) throws IOException {
		Server.Reply reply = Server.call(cmd.get(0), cmd.subList(1, cmd.size()));
		if (reply == null)
			reply = runOnce(cmd);
		if (reply == null)
			return "interrupted";
		return reply.code == 0 ? null : message(reply.text, reply.code);
	}

	/** The command as a process of its own (TensorFlow and the model loaded for this call only). */
	private static Server.Reply runOnce(List<String> cmd) throws IOException {
		ProcessBuilder pb = new ProcessBuilder(cmd);
		pb.redirectErrorStream(true);
		Process p = pb.start();
		String text = read(p.getInputStream());
		try {
			return new Server.Reply(p.waitFor(), text);
		} catch (InterruptedException e) {
			p.destroy();
			Thread.currentThread().interrupt();
			return null;
		}
	}

	/** The error line of a failed command's output: after "error:", else its last line. */
	private static String message(String text, int code) {
		String last = null;
		for (String line : text.split("\n")) {
			line = line.trim();
			if (line.isEmpty())
				continue;
			if (line.contains("error:"))
				last = line.substring(line.indexOf("error:") + 6).trim();
			else if (last == null || !text.contains("error:"))
				last = line;
		}
		return last != null ? last : "ijseg exited with code " + code;
	}

	private static String read(InputStream in) throws IOException {
		ByteArrayOutputStream buf = new ByteArrayOutputStream();
		byte[] chunk = new byte[8192];
		int n;
		while ((n = in.read(chunk)) > 0)
			buf.write(chunk, 0, n);
		return new String(buf.toByteArray(), StandardCharsets.UTF_8);
	}

	private static String notFound() {
		return "the ijseg command line was not found: install ijseg, then run 'ijseg fiji install' on this "
				+ "ImageJ/Fiji folder, or give its path in Plugins>IJSeg>IJSeg Models";
	}

	/** Where the ijseg command line is (see the class comment), or null. */
	static String executable() {
		String exe = System.getProperty("ijseg.executable");
		if (isExecutable(exe))
			return exe;
		exe = System.getenv("IJSEG_EXECUTABLE");
		if (isExecutable(exe))
			return exe;
		exe = Prefs.get(ModelsCommand.PREF_EXECUTABLE, "");
		if (isExecutable(exe))
			return exe;
		String plugins = IJ.getDirectory("plugins");
		if (plugins != null) {
			File props = new File(plugins, "ijseg.properties");
			if (props.isFile()) {
				Properties p = new Properties();
				try (InputStream in = new FileInputStream(props)) {
					p.load(in);
					exe = p.getProperty("executable");
					if (isExecutable(exe))
						return exe;
				} catch (IOException e) {
					IJ.log("IJSeg: cannot read " + props + ": " + e.getMessage());
				}
			}
		}
		String path = System.getenv("PATH");
		if (path != null)
			for (String dir : path.split(File.pathSeparator)) {
				File f = new File(dir, IJ.isWindows() ? "ijseg.exe" : "ijseg");
				if (f.isFile() && f.canExecute())
					return f.getPath();
			}
		return null;
	}

	private static boolean isExecutable(String path) {
		return path != null && !path.isEmpty() && new File(path).isFile() && new File(path).canExecute();
	}

	private static void delete(File dir) {
		if (dir == null)
			return;
		try (Stream<java.nio.file.Path> walk = Files.walk(dir.toPath())) {
			walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
		} catch (IOException e) {
			// a temporary folder left behind is not worth failing for
		}
	}
}
