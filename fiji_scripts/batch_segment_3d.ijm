// ijseg batch segmentation of volumes: every Z stack of a folder -> label stack + 3-D measurements.
//
// For each stack of the input folder (files ending with the suffix), IJSeg Predict with a 3-D
// model (ijseg train --dims 3) makes instance labels over the whole stack, and IJSeg Measure
// measures each object with the columns of ImageJ's "3D Objects Counter" (volume, surface, voxel
// counts, intensity statistics, centroid and centre of mass, bounding box), in the stack's
// calibration (voxel width, height and depth). Writes, into the output folder:
//   NAME_labels.tif          16-bit instance label stack with the input's voxel size (0 background)
//   NAME_results.csv         one row per object
//   summary.csv              one row per stack: Slice, Count, Total Volume, Average Volume, %Volume, Mean
// Objects outside the size range (voxels; max_size 0: no upper limit) are removed.
//
// Needs ImageJ hosted by ijseg (the in-process engine, which takes whole stacks; an ImageJ or
// Fiji on its own segments the current plane only). Through ijseg (the model loads once, and no
// display is needed):
//   ijseg macro run fiji_scripts/batch_segment_3d.ijm --arg input=/in --arg output=/out --arg model=/m
#@ File (label="Input folder", style="directory") input
#@ File (label="Output folder", style="directory") output
#@ File (label="3-D model (ijseg model folder or bioimage.io .zip)") model
#@ Integer (label="Minimum object size (voxels)", value=0) min_size
#@ Integer (label="Maximum object size (voxels, 0: no limit)", value=0) max_size
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
summary = "Slice,Count,Total Volume,Average Volume,%Volume,Mean\n";
n = 0;
for (i = 0; i < files.length; i++) {
	if (!endsWith(files[i], suffix))
		continue;
	open(input + File.separator + files[i]);
	image = getTitle();
	stem = File.nameWithoutExtension;
	getDimensions(width, height, channels, planes, frames);
	if (planes < 2)
		exit(files[i] + " has no planes along z: use batch_segment.ijm with a 2-D model");
	getVoxelSize(vw, vh, vd, unit);
	stackVolume = width * height * planes * vw * vh * vd;
	run("IJSeg Predict", "model=[" + model + "] output=labels size=" + range);
	saveAs("Tiff", output + File.separator + stem + "_labels.tif");
	labels = getTitle();
	run("IJSeg Measure", "labels=[" + labels + "] intensity=[" + image + "]");
	saveAs("Results", output + File.separator + stem + "_results.csv");
	// the volume column is named after the unit, e.g. "Volume (micron^3)"
	headings = split(String.getResultsHeadings, "\t");
	volumeColumn = "";
	for (h = 0; h < headings.length; h++)
		if (startsWith(headings[h], "Volume ("))
			volumeColumn = headings[h];
	count = nResults;
	total = 0;
	mean = 0;
	for (r = 0; r < count; r++) {
		total += getResult(volumeColumn, r);
		mean += getResult("Mean", r);
	}
	average = 0;
	if (count > 0) {
		average = total / count;
		mean = mean / count;
	}
	summary = summary + files[i] + "," + count + "," + d2s(total, 9) + "," + d2s(average, 9) + ","
		+ d2s(100 * total / stackVolume, 9) + "," + d2s(mean, 9) + "\n";
	n++;
	close("*");
	print("IJSeg batch 3D: " + files[i] + ": " + count + " objects");
}
if (n == 0)
	exit("No " + suffix + " stacks in " + input);
File.saveString(summary, output + File.separator + "summary.csv");
print("IJSeg batch 3D: " + n + " stacks segmented; results in " + output);
