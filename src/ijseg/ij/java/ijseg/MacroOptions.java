package ijseg;

import ij.IJ;
import ij.Macro;
import ij.plugin.frame.Recorder;

/**
 * A command's options read straight from a macro's {@code run("IJSeg ...", "key=value ...")}
 * string, without building its GenericDialog, where that gives the values the dialog would: a
 * batch of 100 images spent 0.2 s (of 8) building the dialogs of IJSeg Predict and IJSeg Measure.
 *
 * <p>Only literal values are read here; each method returns null where the dialog's own rules
 * could give something else, and the command then builds its dialog as before. In macro mode
 * (ImageJ 1.53t's GenericDialog) the dialog finds a value with {@link Macro#getValue}, as here,
 * and then: looks a string up as a macro variable when it starts with {@code &} or could be a
 * variable's name; parses a number with {@link Double#valueOf}, else looks it up as a variable
 * (an error when there is none), and gives its exact default for the text it displays; accepts
 * a choice that is one of its items exactly (an error otherwise); takes a checkbox as on when its
 * key appears as a word outside brackets. While the Recorder records inside macros, the dialog
 * records the call, so it is always built then.
 */
final class MacroOptions {

	private MacroOptions() {
	}

	/** Whether the dialogs must be built: the Recorder records what macros run. */
	static boolean recording() {
		return Recorder.record && Recorder.recordInMacros;
	}

	/** Whether {@code options} contains any of {@code words} anywhere (a checkbox's key, say). */
	static boolean mentions(String options, String... words) {
		for (String w : words)
			if (options.contains(w))
				return true;
		return false;
	}

	/**
	 * The literal value of {@code key}; {@code absent} without the key; null where the dialog
	 * might read a macro variable instead (empty, starting with {@code &}, or a possible variable
	 * name).
	 */
	static String literal(String options, String key, String absent) {
		String v = Macro.getValue(options, key, null);
		if (v == null)
			return absent;
		if (v.isEmpty() || v.startsWith("&") || isName(v))
			return null;
		return v;
	}

	/**
	 * The number given for {@code key}, {@code def} without the key; null where the dialog's
	 * reading could differ (not a number, or a default that the dialog's {@code digits} do not
	 * show exactly).
	 */
	static Double number(String options, String key, double def, int digits) {
		String v = Macro.getValue(options, key, null);
		if (v == null)
			return def;
		if (Double.parseDouble(IJ.d2s(def, digits)) != def)
			return null; // the dialog gives its exact default for the text it shows
		try { // as the dialog parses; "&t", a variable's name: null
			return Double.valueOf(v);
		} catch (NumberFormatException e) {
			return null;
		}
	}

	/** The item named for {@code key} (exactly one of {@code items}), {@code absent} without the key, else null. */
	static String choice(String options, String key, String[] items, String absent) {
		String v = Macro.getValue(options, key, null);
		if (v == null)
			return absent;
		for (String item : items)
			if (item.equals(v))
				return item;
		return null;
	}

	/** Whether {@code s} could name a macro variable. */
	private static boolean isName(String s) {
		if (!Character.isLetter(s.charAt(0)) && s.charAt(0) != '_')
			return false;
		for (int i = 1; i < s.length(); i++)
			if (!Character.isLetterOrDigit(s.charAt(i)) && s.charAt(i) != '_')
				return false;
		return true;
	}
}
