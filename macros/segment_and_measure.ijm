// The course pipeline as the Macro Recorder writes it, made reusable: open an image,
// segment it with IJSeg Predict, measure the objects with ImageJ's own Analyze Particles
// (Count Masks, display, clear, summarize; measurements set explicitly), save labels and results.
//
// IJSeg Predict returns instance labels, in which neighbouring nuclei touch. Analyze Particles
// works on a binary mask and would merge touching objects, so a one-pixel line is cut between
// them first (on the side of the lower label), as Process > Binary > Watershed would.
// For measurements of the uncut objects use run("IJSeg Measure", ...) (see batch_segment.ijm).
//
//   ijseg macro run macros/segment_and_measure.ijm --arg image=cells.tif --arg model=MODEL --arg output=OUT
// writes OUT/NAME_count_mask.tif (Analyze Particles' Count Masks), OUT/NAME_results.csv (one row per
// object) and OUT/NAME_summary.csv (Analyze Particles' Summary).
#@ File (label="Image") image
#@ File (label="Model (ijseg model folder or bioimage.io .zip)") model
#@ File (label="Output folder", style="directory") output
#@ Float (label="Threshold", value=0.5) threshold
#@ Integer (label="Minimum object size (pixels)", value=0) min_size

setBatchMode(true);
setOption("BlackBackground", true);
File.makeDirectory(output);
open(image);
raw = getTitle();
stem = File.nameWithoutExtension;
run("IJSeg Predict", "model=[" + model + "] output=labels threshold=" + threshold);
labels = getTitle();
run("Duplicate...", "title=higher");
run("Maximum...", "radius=1");
imageCalculator("Subtract create", "higher", labels);
rename("cut");
setThreshold(1, 65535);
run("Convert to Mask");
selectImage(labels);
run("Duplicate...", "title=objects");
setThreshold(1, 65535);
run("Convert to Mask");
imageCalculator("Subtract", "objects", "cut");
run("Set Measurements...", "area mean standard min centroid center perimeter bounding fit shape feret's integrated redirect=[" + raw + "] decimal=3");
selectImage("objects");
setThreshold(255, 255);
run("Analyze Particles...", "size=" + min_size + "-Infinity show=[Count Masks] display clear summarize");
saveAs("Tiff", output + File.separator + stem + "_count_mask.tif");
Table.save(output + File.separator + stem + "_summary.csv");  // the Summary table is the current one
close("Summary");
saveAs("Results", output + File.separator + stem + "_results.csv");
print("segment_and_measure: " + raw + ": " + nResults + " objects");
