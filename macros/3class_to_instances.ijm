// ijseg: instance labels from a 3-class probability map (channels: background, interior,
// boundary), as ijseg post-processes its 3-class models. Used as deepImageJ post-processing.
//
//  1. foreground = pixels whose most likely class is not background (argmax != 0);
//  2. seeds = 4-connected regions of confident interior (p_interior > seed) in the foreground;
//  3. the seeds grow over the foreground through 4-neighbours by a watershed on the interior
//     probability (priority flood: most likely interior first), as ijseg's Python code does;
//     priorities are quantised to 1000 levels, so a few border pixels between touching
//     objects may go to the other neighbour;
//  4. foreground pieces that no seed reaches become objects of their own (8-connected).
//
// Argument (optional): "seed=0.8"
// Result: a new image "instances" (16-bit labels; 32-bit if there are more than 65535).

// macro functions see only variables declared with var
var seed = 0.8;  // ijseg: default
var w = 0;
var h = 0;
var fg;
var lab;
var pint;
var nextInLevel;
var levelHead;
var levelTail;
var LEVELS = 1000;

args = split(getArgument(), " ");
for (k = 0; k < args.length; k++) {
    kv = split(args[k], "=");
    if (kv.length == 2 && kv[0] == "seed") seed = parseFloat(kv[1]);
}
if (isNaN(seed) || seed <= 0 || seed >= 1)
    exit("3class_to_instances: seed must be between 0 and 1, got " + seed);
if (nSlices != 3)
    exit("3class_to_instances: expects 3 channels (background, interior, boundary), got " + nSlices);

w = getWidth();
h = getHeight();
n = w * h;
pbg = channel(1);
pint = channel(2);
pbnd = channel(3);
fg = newArray(n);
for (i = 0; i < n; i++)
    if (pbg[i] < maxOf(pint[i], pbnd[i])) fg[i] = 1;

lab = newArray(n);
next = 0;
// 2. seeds: 4-connected components of confident interior
for (i = 0; i < n; i++) {
    if (fg[i] == 1 && lab[i] == 0 && pint[i] > seed) {
        next++;
        flood(i, next, 4, true);
    }
}
// 3. priority flood from the seeds: a bucket queue over quantised (1 - p_interior), first in
//    first out within a level; a pixel takes the label of the neighbour that reaches it first
nextInLevel = newArray(n);
levelHead = newArray(LEVELS);
levelTail = newArray(LEVELS);
Array.fill(levelHead, -1);
Array.fill(levelTail, -1);
queued = newArray(n);
for (i = 0; i < n; i++) {
    if (lab[i] > 0) { push(i, level(i)); queued[i] = 1; }  // seeds enter at their own priority
}
current = 0;
while (current < LEVELS) {
    i = levelHead[current];
    if (i < 0) { current++; continue; }
    levelHead[current] = nextInLevel[i];
    if (levelHead[current] < 0) levelTail[current] = -1;
    x = i % w;
    y = floor(i / w);
    for (k = 0; k < 4; k++) {
        if (k == 0) { if (x == 0) continue; j = i - 1; }
        if (k == 1) { if (x == w - 1) continue; j = i + 1; }
        if (k == 2) { if (y == 0) continue; j = i - w; }
        if (k == 3) { if (y == h - 1) continue; j = i + w; }
        if (fg[j] == 1 && queued[j] == 0) {
            queued[j] = 1;
            lab[j] = lab[i];
            push(j, maxOf(current, level(j)));
        }
    }
}
// 4. foreground without a seed: objects of their own (8-connected)
for (i = 0; i < n; i++) {
    if (fg[i] == 1 && lab[i] == 0) {
        next++;
        flood(i, next, 8, false);
    }
}
if (next > 65535) newImage("instances", "32-bit black", w, h, 1);
else newImage("instances", "16-bit black", w, h, 1);
for (i = 0; i < n; i++)
    if (lab[i] > 0) setPixel(i % w, floor(i / w), lab[i]);
resetMinAndMax();

function channel(c) {
    setSlice(c);
    a = newArray(w * h);
    for (yy = 0; yy < h; yy++)
        for (xx = 0; xx < w; xx++)
            a[yy * w + xx] = getPixel(xx, yy);
    return a;
}

function level(j) {
    return minOf(LEVELS - 1, floor((1 - pint[j]) * LEVELS));
}

function push(j, lev) {
    nextInLevel[j] = -1;
    if (levelTail[lev] < 0) levelHead[lev] = j;
    else nextInLevel[levelTail[lev]] = j;
    levelTail[lev] = j;
}

// label the region containing pixel start (connectivity 4 or 8); seedsOnly restricts it to
// confident interior pixels
function flood(start, value, connectivity, seedsOnly) {
    stack = newArray(1);
    stack[0] = start;
    lab[start] = value;
    top = 1;
    while (top > 0) {
        top--;
        p = stack[top];
        px = p % w;
        py = floor(p / w);
        for (dy = -1; dy <= 1; dy++) {
            for (dx = -1; dx <= 1; dx++) {
                if (dx == 0 && dy == 0) continue;
                if (connectivity == 4 && dx != 0 && dy != 0) continue;
                qx = px + dx;
                qy = py + dy;
                if (qx < 0 || qy < 0 || qx >= w || qy >= h) continue;
                q = qy * w + qx;
                if (fg[q] == 1 && lab[q] == 0 && (!seedsOnly || pint[q] > seed)) {
                    lab[q] = value;
                    if (top >= stack.length) stack = Array.concat(stack, newArray(stack.length));
                    stack[top] = q;
                    top++;
                }
            }
        }
    }
}
