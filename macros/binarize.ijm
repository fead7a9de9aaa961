// ijseg: binarize a probability map (32-bit, values 0..1) into an 8-bit mask (255 = foreground)
// where p > threshold, as ijseg's post-processing of binary models. Used as deepImageJ
// post-processing.
//
// Argument (optional): "threshold=0.5"
// Result: the current image becomes an 8-bit mask, 0 / 255.

threshold = 0.5;  // ijseg: default
args = split(getArgument(), " ");
for (k = 0; k < args.length; k++) {
    kv = split(args[k], "=");
    if (kv.length == 2 && kv[0] == "threshold") threshold = parseFloat(kv[1]);
}
if (isNaN(threshold) || threshold <= 0 || threshold >= 1)
    exit("binarize: threshold must be between 0 and 1, got " + threshold);
if (bitDepth() != 32)
    run("32-bit");
// p > threshold, compared in double precision per pixel (a threshold set with setThreshold is
// compared in float32 and would include p == threshold)
run("Macro...", "code=[v = (v > " + d2s(threshold, 9) + ") * 255]");
setMinAndMax(0, 255);
run("8-bit");
