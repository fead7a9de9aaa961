package ijseg;

import ij.IJ;
import ij.ImagePlus;
import ij.WindowManager;
import ij.macro.Interpreter;
import ij.measure.Calibration;
import ij.process.ImageProcessor;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * Where the IJSeg commands find their engine, and the helpers they share.
 *
 * <p>Macros can ask which engine is in use: {@code call("ijseg.Bridge.engine")}.
 */
public final class Bridge {

	private static volatile Engine engine;
	private static final List<ImagePlus> collected = new ArrayList<>();
	private static PrintStream savedOut;
	private static ByteArrayOutputStream captured;

	private Bridge() {
	}

	/** Registers the engine of a hosting Python process (null: back to the command line). */
	public static void setEngine(Engine e) {
		engine = e;
	}

	/** The registered engine, or the command-line engine when none is registered. */
	public static Engine getEngine() {
		Engine e = engine;
		return e != null ? e : new CommandLineEngine();
	}

	/** For macros: a description of the engine in use. */
	public static String engine() {
		return getEngine().describe();
	}

	/**
	 * Keeps the open images (batch-mode images included) for the hosting Python process, which
	 * appends {@code call("ijseg.Bridge.collect");} to a macro to get its images back.
	 *
	 * @return the number of images kept
	 */
	public static String collect() {
		synchronized (collected) {
			collected.clear();
			int[] ids = WindowManager.getIDList();
			if (ids != null)
				for (int id : ids) {
					ImagePlus imp = WindowManager.getImage(id);
					if (imp != null)
						collected.add(imp);
				}
			return String.valueOf(collected.size());
		}
	}

	/** The images kept by the last {@link #collect()}, handed over once. */
	public static ImagePlus[] takeCollected() {
		synchronized (collected) {
			ImagePlus[] out = collected.toArray(new ImagePlus[0]);
			collected.clear();
			return out;
		}
	}

	/**
	 * Starts copying what is printed to System.out, which is where print() and IJ.log() write
	 * in batch mode when ImageJ has no Log window, so that the host can return a macro's output.
	 */
	public static synchronized void startCapture() {
		if (savedOut != null)
			return;
		savedOut = System.out;
		captured = new ByteArrayOutputStream();
		final PrintStream copy = new PrintStream(captured, true);
		System.setOut(new PrintStream(savedOut, true) {
			@Override
			public void write(byte[] buf, int off, int len) {
				super.write(buf, off, len);
				copy.write(buf, off, len);
			}

			@Override
			public void write(int b) {
				super.write(b);
				copy.write(b);
			}
		});
	}

	/** Stops copying System.out and returns what was printed since {@link #startCapture()}. */
	public static synchronized String stopCapture() {
		if (savedOut == null)
			return "";
		System.out.flush();
		System.setOut(savedOut);
		savedOut = null;
		String text = new String(captured.toByteArray(), StandardCharsets.UTF_8);
		captured = null;
		return text;
	}

	/**
	 * Reports an error: inside a macro it stops the macro with the message as a macro error
	 * (with the line of the run() call), otherwise it shows an error dialog.
	 */
	static void fail(String command, String message) {
		String text = command + ": " + message;
		Interpreter interp = Interpreter.getInstance();
		if (interp != null)
			interp.abort(text);
		else
			IJ.error(command, message);
	}

	/** The title of an image without its file extension ("blobs.tif" gives "blobs"). */
	public static String stem(String title) {
		String lower = title.toLowerCase();
		String[] extensions = {".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png", ".jpg", ".jpeg", ".bmp", ".gif"};
		for (String ext : extensions)
			if (lower.endsWith(ext) && title.length() > ext.length())
				return title.substring(0, title.length() - ext.length());
		return title;
	}

	/**
	 * What the engine segments: the whole image when it is a stack of channels only, otherwise
	 * the current plane, with the image's calibration.
	 */
	static ImagePlus input(ImagePlus imp) {
		int n = imp.getStackSize();
		if (n == 1 || (imp.getNChannels() == n))
			return imp;
		ImageProcessor ip = imp.getProcessor().duplicate();
		ImagePlus plane = new ImagePlus(imp.getTitle(), ip);
		plane.setCalibration(imp.getCalibration());
		return plane;
	}

	/** Copies the spatial calibration of {@code from} onto {@code to} (not the value calibration). */
	static void copyCalibration(ImagePlus from, ImagePlus to) {
		Calibration c = from.getCalibration();
		Calibration d = to.getCalibration();
		d.pixelWidth = c.pixelWidth;
		d.pixelHeight = c.pixelHeight;
		d.setUnit(c.getUnit());
	}
}
