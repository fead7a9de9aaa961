// ijseg batch segmentation: every image of a folder -> label image + measurements.
//
// For each image of the input folder (files ending with the suffix), IJSeg Predict makes
// instance labels and IJSeg Measure measures each object (Analyze Particles' columns, in the
// image's calibration). Writes, into the output folder:
//   NAME_labels.tif          16-bit instance labels (0 background)
//   NAME_results.csv         one row per object
//   summary.csv              one row per image: Slice, Count, Total Area, Average Size, %Area, Mean
// Objects outside the size range (pixels; max_size 0: no upper limit) are removed.
//
// Runs unchanged in Fiji (script editor, or headless:
//   ImageJ-linux64 --headless --console --run batch_segment.ijm 'input="/in",output="/out",model="/m"')
// and through ijseg, which also works on a machine without a display:
//   ijseg macro run fiji_scripts/batch_segment.ijm --arg input=/in --arg output=/out --arg model=/m
// With ijseg hosting ImageJ, the model is loaded once for the whole folder.
#@ File (label="Input folder", style="directory") input
#@ File (label="Output folder", style="directory") output
#@ File (label="Model (ijseg model folder or bioimage.io .zip)") model
#@ Float (label="Threshold", value=0.5) threshold
#@ Integer (label="Minimum object size (pixels)", value=0) min_size
#@ Integer (label="Maximum object size (pixels, 0: no limit)", value=0) max_size
#@ String (label="File suffix", value=".tif") suffix

setBatchMode(true);
if (!File.isDirectory(input))
	exit("Input folder not found: " + input);
File.makeDirectory(output);
if (!File.isDirectory(output))
	exit("Cannot create the output folder " + output);
if (max_size == 0)
	range = "" + min_size + "-Infinity";
else
	range = "" + min_size + "-" + max_size;
files = getFileList(input);
Array.sort(files);
summary = "Slice,Count,Total Area,Average Size,%Area,Mean\n";
n = 0;
for (i = 0; i < files.length; i++) {
	if (!endsWith(files[i], suffix))
		continue;
	open(input + File.separator + files[i]);
	image = getTitle();
	stem = File.nameWithoutExtension;
	getPixelSize(unit, pw, ph);
	run("IJSeg Predict", "model=[" + model + "] output=labels threshold=" + threshold + " size=" + range);
	labels = getTitle();
	saveAs("Tiff", output + File.separator + stem + "_labels.tif");
	labels = getTitle();
	run("IJSeg Measure", "labels=[" + labels + "] intensity=[" + image + "]");
	saveAs("Results", output + File.separator + stem + "_results.csv");
	count = nResults;
	total = 0;
	mean = 0;
	for (r = 0; r < count; r++) {
		total += getResult("Area", r);
		mean += getResult("Mean", r);
	}
	average = 0;
	if (count > 0) {
		average = total / count;
		mean = mean / count;
	}
	area = 100 * total / (getWidth() * getHeight() * pw * ph);
	summary = summary + files[i] + "," + count + "," + d2s(total, 9) + "," + d2s(average, 9) + "," + d2s(area, 9)
		+ "," + d2s(mean, 9) + "\n";
	n++;
	close("*");
	print("IJSeg batch: " + files[i] + ": " + count + " objects");
}
if (n == 0)
	exit("No " + suffix + " images in " + input);
File.saveString(summary, output + File.separator + "summary.csv");
print("IJSeg batch: " + n + " images segmented; results in " + output);
