// ijseg: percentile normalisation of the current image, as ijseg and its bioimage.io bundles
// do it (bioimage.io "scale_range", per image and per channel):
//     out = (in - p_low) / (p_high - p_low + eps)
// with numpy's linear interpolation between ranks. Used as deepImageJ pre-processing: a bundle
// carries a copy whose defaults are its model's own percentiles (deepImageJ 3.0.3 runs it
// without arguments).
//
// Argument (optional): "pmin=1 pmax=99.8 eps=0.000001"
// Input: a 2-D image, or a stack whose slices are the channels (each normalised on its own).
// Result: the current image, converted to 32-bit and normalised in place.

pmin = 1;  // ijseg: default
pmax = 99.8;  // ijseg: default
eps = 0.000001;  // ijseg: default
args = split(getArgument(), " ");
for (k = 0; k < args.length; k++) {
    kv = split(args[k], "=");
    if (kv.length == 2 && kv[0] == "pmin") pmin = parseFloat(kv[1]);
    if (kv.length == 2 && kv[0] == "pmax") pmax = parseFloat(kv[1]);
    if (kv.length == 2 && kv[0] == "eps") eps = parseFloat(kv[1]);
}
if (isNaN(pmin) || isNaN(pmax) || pmin < 0 || pmax > 100 || pmin >= pmax)
    exit("scale_range: need 0 <= pmin < pmax <= 100, got pmin=" + pmin + " pmax=" + pmax);
if (isNaN(eps) || eps < 0)
    exit("scale_range: eps must be a number >= 0, got " + eps);

run("32-bit");
w = getWidth();
h = getHeight();
for (s = 1; s <= nSlices; s++) {
    setSlice(s);
    values = newArray(w * h);
    i = 0;
    for (y = 0; y < h; y++) {
        for (x = 0; x < w; x++) {
            values[i] = getPixel(x, y);
            i++;
        }
    }
    Array.sort(values);
    lo = percentile(values, pmin);
    hi = percentile(values, pmax);
    // d2s keeps 9 decimals: plain string concatenation would keep only 4; without "stack"
    // Subtract and Divide change the current slice only
    run("Subtract...", "value=" + d2s(lo, 9) + " slice");
    run("Divide...", "value=" + d2s(hi - lo + eps, 9) + " slice");
}
setSlice(1);
resetMinAndMax();

function percentile(sorted, p) {
    r = p / 100 * (sorted.length - 1);
    i0 = floor(r);
    i1 = minOf(i0 + 1, sorted.length - 1);
    return sorted[i0] + (sorted[i1] - sorted[i0]) * (r - i0);
}
