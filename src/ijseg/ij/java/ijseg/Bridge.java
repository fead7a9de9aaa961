package ijseg;

import ij.IJ;
import ij.ImagePlus;
import ij.ImageStack;
import ij.WindowManager;
import ij.macro.Interpreter;
import ij.measure.Calibration;
import ij.measure.ResultsTable;
import ij.process.ImageProcessor;

import java.awt.Component;
import java.awt.Container;
import java.awt.Dialog;
import java.awt.EventQueue;
import java.awt.Label;
import java.awt.TextComponent;
import java.awt.Window;
import java.awt.event.WindowEvent;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.security.Permission;
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
	private static volatile int macrosRunning;
	private static volatile String blockedExit;
	private static boolean exitGuarded;
	/** Why ImageJ 1.x quits without a message: IJ.getImage() found no image. */
	private static final String NO_IMAGE = "there is no image open for this command (ImageJ would have quit)";

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

	/**
	 * Appends one row per object to {@code table}: {@code values[c][i]} is column
	 * {@code columns[c]} of row {@code i}. One call from the hosting Python process instead of
	 * one per cell.
	 */
	public static void addRows(ResultsTable table, String[] columns, double[][] values) {
		int rows = values.length == 0 ? 0 : values[0].length;
		for (int i = 0; i < rows; i++) {
			table.incrementCounter();
			for (int c = 0; c < columns.length; c++)
				table.addValue(columns[c], values[c][i]);
		}
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

	/**
	 * Stops ImageJ from ending the process while the host runs a macro. Without its main window
	 * ImageJ 1.x calls {@code System.exit(0)} when a command needs an image and none is open
	 * ({@code IJ.getImage()}), so a macro that failed would end its host silently with status 0.
	 * A security manager turns that exit into a cancelled macro (the host reports ImageJ's last
	 * error message); where the JVM no longer allows one (Java 24+), a shutdown hook ends the
	 * process with status 1 and the message on standard error instead. Called once by the host
	 * (Java 17-23 print a deprecation warning on the process's standard error, which the host hides).
	 */
	public static synchronized void guardExit() {
		if (exitGuarded)
			return;
		exitGuarded = true;
		try {
			System.setSecurityManager(new SecurityManager() {
				@Override
				public void checkPermission(Permission perm) {
				}

				@Override
				public void checkPermission(Permission perm, Object context) {
				}

				@Override
				public void checkExit(int status) {
					if (macrosRunning > 0) {
						String message = IJ.getErrorMessage();
						blockedExit = message != null && !message.isEmpty() ? message : NO_IMAGE;
						throw new RuntimeException(ij.Macro.MACRO_CANCELED);
					}
				}
			});
		} catch (UnsupportedOperationException | SecurityException e) {
			Runtime.getRuntime().addShutdownHook(new Thread(() -> {
				if (macrosRunning > 0) {
					String message = IJ.getErrorMessage();
					System.err.println("ijseg: ImageJ ended the process during a macro"
						+ (message != null && !message.isEmpty() ? ": " + message : ""));
					Runtime.getRuntime().halt(1);
				}
			}));
		}
	}

	/** The host starts a macro (see {@link #guardExit()}). */
	public static synchronized void macroStarted() {
		macrosRunning++;
		blockedExit = null;
	}

	/**
	 * The host's macro ended; returns ImageJ's message if it tried to quit the process during
	 * the macro, else null.
	 */
	public static synchronized String macroEnded() {
		macrosRunning = Math.max(0, macrosRunning - 1);
		String message = blockedExit;
		blockedExit = null;
		return message;
	}

	/**
	 * Closes the modal dialogs that are showing, as if cancelled, and returns what they said
	 * ("" if none was showing): in batch runs nobody can answer a dialog, so the host aborts the
	 * macro with this text instead of waiting for ever.
	 */
	public static String closeModalDialogs() {
		StringBuilder text = new StringBuilder();
		for (Window w : Window.getWindows()) {
			if (!(w instanceof Dialog) || !w.isShowing() || !((Dialog) w).isModal())
				continue;
			final Dialog d = (Dialog) w;
			if (text.length() > 0)
				text.append("; ");
			text.append(describe(d));
			EventQueue.invokeLater(() -> {
				d.dispatchEvent(new WindowEvent(d, WindowEvent.WINDOW_CLOSING));
				d.dispose();
			});
		}
		return text.toString();
	}

	private static String describe(Dialog d) {
		StringBuilder text = new StringBuilder("'" + d.getTitle() + "'");
		List<String> words = new ArrayList<>();
		collectText(d, words);
		if (!words.isEmpty())
			text.append(": ").append(String.join(" ", words));
		return text.toString();
	}

	private static void collectText(Container c, List<String> words) {
		for (Component child : c.getComponents()) {
			String t = null;
			if (child instanceof Label)
				t = ((Label) child).getText();
			else if (child instanceof javax.swing.JLabel)
				t = ((javax.swing.JLabel) child).getText();
			else if (child instanceof TextComponent && !((TextComponent) child).isEditable())
				t = ((TextComponent) child).getText();
			if (t != null && !t.trim().isEmpty())
				words.add(t.trim().replaceAll("\\s+", " "));
			if (child instanceof Container)
				collectText((Container) child, words);
		}
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
	 * What the command line engine writes for {@code ijseg}: a plane, or a stack of channels only,
	 * as it is; an image with planes along z as the current frame's volume (every channel, or with
	 * {@code oneChannel} the current one's), of which a 2-D model takes the current plane
	 * ({@code ijseg predict --plane}); else (a time series) the current plane. The calibration is
	 * kept. (The in-process engine reads what it needs from the image itself.)
	 */
	static ImagePlus input(ImagePlus imp, boolean oneChannel) {
		int n = imp.getStackSize(), c = imp.getNChannels(), z = imp.getNSlices();
		if (n == 1 || (c == n && !oneChannel))
			return imp;
		ImagePlus out;
		if (z > 1) {
			int first = oneChannel ? imp.getC() : 1, last = oneChannel ? imp.getC() : c;
			ImageStack from = imp.getStack();
			ImageStack volume = new ImageStack(imp.getWidth(), imp.getHeight());
			for (int k = 1; k <= z; k++)
				for (int ch = first; ch <= last; ch++)
					volume.addSlice(from.getProcessor(imp.getStackIndex(ch, k, imp.getT())));
			out = new ImagePlus(imp.getTitle(), volume);
			out.setDimensions(last - first + 1, z, 1);
		} else
			return plane(imp);
		out.setCalibration(imp.getCalibration());
		return out;
	}

	/** The current plane of {@code imp} (the current channel's), with its calibration. */
	static ImagePlus plane(ImagePlus imp) {
		if (imp.getStackSize() == 1)
			return imp;
		ImagePlus out = new ImagePlus(imp.getTitle(), imp.getProcessor().duplicate());
		out.setCalibration(imp.getCalibration());
		return out;
	}

	/** Copies the spatial calibration (pixel width, height, depth, unit) of {@code from} onto {@code to}
	 * (not the value calibration). */
	static void copyCalibration(ImagePlus from, ImagePlus to) {
		Calibration c = from.getCalibration();
		Calibration d = to.getCalibration();
		d.pixelWidth = c.pixelWidth;
		d.pixelHeight = c.pixelHeight;
		d.pixelDepth = c.pixelDepth;
		d.setUnit(c.getUnit());
	}
}
