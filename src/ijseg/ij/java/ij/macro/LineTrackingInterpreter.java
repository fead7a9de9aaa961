package ij.macro;

/**
 * An Interpreter for {@code ijseg macro run}: errors stop the macro, as in interactive ImageJ,
 * without opening a dialog, and the line of the first error is kept.
 *
 * <p>With errors ignored (no modal dialog), ImageJ 1.x records the message of an error but
 * goes on running the macro, and does not keep the line. This class lives in ImageJ's package
 * to see the interpreter's program counter. It is used only when Python hosts the JVM with this
 * jar on the class path; ImageJ's menus never load it.
 */
public class LineTrackingInterpreter extends Interpreter {

	private int errorLine;

	public LineTrackingInterpreter() {
		setIgnoreErrors(true);
	}

	private void remember() {
		if (errorLine == 0 && pgm != null && pc >= 0 && pc < pgm.lineNumbers.length)
			errorLine = pgm.lineNumbers[pc];
	}

	@Override
	void error(String message) {
		remember();
		super.error(message);
		// stop here, as ImageJ does when it shows the error (the message is kept)
		throw new RuntimeException(ij.Macro.MACRO_CANCELED);
	}

	@Override
	public void abort(String message) {
		remember();
		super.abort(message);
	}

	/** The line of the first error or abort(message), 0 if none. */
	public int getErrorLineNumber() {
		return errorLine;
	}
}
