package ijseg;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * A long-lived {@code ijseg serve} process for {@link CommandLineEngine}: started at the first
 * IJSeg command of an ImageJ session, it keeps TensorFlow and the loaded models in memory, so
 * each later image costs no start-up. One request at a time (the methods are synchronized).
 * It ends when ImageJ exits (its standard input closes). When it cannot start (an ijseg without
 * {@code serve}) or dies, {@link #call} returns null and the engine runs the command line once
 * per call instead.
 */
final class Server {

	private static Server current;

	private final String executable;
	private final Process process;
	private final Writer in;
	private final BufferedReader out;

	/** The exit code and printed text of one request. */
	static final class Reply {
		final int code;
		final String text;

		Reply(int code, String text) {
			this.code = code;
			this.text = text;
		}
	}

	private Server(String executable, Process process) {
		this.executable = executable;
		this.process = process;
		this.in = new OutputStreamWriter(process.getOutputStream(), StandardCharsets.UTF_8);
		this.out = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
	}

	/** Runs {@code args} (the command line without the executable) in the server of
	 * {@code executable}; null if no server runs for it. */
	static synchronized Reply call(String executable, List<String> args) {
		if (Boolean.getBoolean("ijseg.noserver"))
			return null;
		Server s = current;
		if (s != null && (!s.executable.equals(executable) || !s.process.isAlive())) {
			s.stop();
			s = current = null;
		}
		if (s == null) {
			s = start(executable);
			if (s == null)
				return null;
			current = s;
		}
		Reply reply = s.request(args);
		if (reply == null) {  // it died: the caller runs the command line instead
			s.stop();
			current = null;
		}
		return reply;
	}

	/** "pid N" of the running server, or null. */
	static synchronized String describe() {
		return current != null && current.process.isAlive() ? "server pid " + pid(current.process) : null;
	}

	private static Server start(String executable) {
		try {
			ProcessBuilder pb = new ProcessBuilder(executable, "serve");
			pb.redirectError(ProcessBuilder.Redirect.INHERIT);
			Server s = new Server(executable, pb.start());
			String hello = s.out.readLine();
			if (hello == null || !hello.startsWith("ijseg serve")) {
				s.stop();
				return null;
			}
			Runtime.getRuntime().addShutdownHook(new Thread(s::stop));
			return s;
		} catch (IOException e) {
			return null;
		}
	}

	private Reply request(List<String> args) {
		StringBuilder json = new StringBuilder("[");
		for (int i = 0; i < args.size(); i++)
			json.append(i == 0 ? "" : ",").append(quote(args.get(i)));
		try {
			in.write(json.append("]\n").toString());
			in.flush();
			StringBuilder text = new StringBuilder();
			String line;
			while ((line = out.readLine()) != null) {
				if (line.startsWith("= "))
					return new Reply(Integer.parseInt(line.substring(2).trim()), text.toString());
				text.append(line.startsWith("| ") ? line.substring(2) : line).append('\n');
			}
			return null;
		} catch (IOException | NumberFormatException e) {
			return null;
		}
	}

	private void stop() {
		try {
			in.close();
		} catch (IOException e) {
			// already gone
		}
		process.destroy();
	}

	/** A JSON string literal. */
	static String quote(String s) {
		StringBuilder b = new StringBuilder("\"");
		for (char c : s.toCharArray()) {
			if (c == '"' || c == '\\')
				b.append('\\').append(c);
			else if (c < 0x20)
				b.append(String.format("\\u%04x", (int) c));
			else
				b.append(c);
		}
		return b.append('"').toString();
	}

	private static String pid(Process p) {
		// Java 8 has no Process.pid(); the field exists on Unix
		try {
			java.lang.reflect.Method m = Process.class.getMethod("pid");
			return String.valueOf(m.invoke(p));
		} catch (ReflectiveOperationException e) {
			return "?";
		}
	}
}
