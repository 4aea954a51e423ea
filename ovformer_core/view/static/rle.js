// COCO compressed RLE, decoded in the browser.
//
// The counts string (pycocotools rleToString): each run length is written in 6-bit groups as
// chr(48 + group), least significant first, 5 data bits per group; 0x20 marks that another group
// follows; 0x10 of the last group is the sign. From the third run on, each value is stored as the
// difference from the run two places before. Runs alternate background / foreground, starting with
// background, over the pixels in column-major order (x outer, y inner).

/** Run lengths of a compressed counts string. */
export function runLengths(counts) {
  const runs = [];
  let p = 0;
  while (p < counts.length) {
    let value = 0;
    let shift = 0;
    let more = true;
    while (more) {
      const c = counts.charCodeAt(p) - 48;
      value |= (c & 0x1f) << shift;
      more = (c & 0x20) !== 0;
      p += 1;
      shift += 5;
      if (!more && (c & 0x10) !== 0) value |= -1 << shift;
    }
    if (runs.length > 2) value += runs[runs.length - 2];
    runs.push(value);
  }
  return runs;
}

/**
 * Paint the foreground of a mask into an RGBA buffer and a label map.
 * @param {number[]} runs run lengths (runLengths)
 * @param {number} height mask height
 * @param {number} width mask width
 * @param {Uint8ClampedArray} rgba width*height*4, row-major
 * @param {Int32Array} labels width*height, row-major; receives `label` where painted
 * @param {number} label value written into labels
 * @param {number[]} rgb colour
 * @returns {number[]|null} bounding box [x0, y0, x1, y1] of the painted pixels, or null if none
 */
export function paintRuns(runs, height, width, rgba, labels, label, rgb) {
  let index = 0;
  let x0 = width;
  let y0 = height;
  let x1 = -1;
  let y1 = -1;
  const total = height * width;
  for (let r = 0; r < runs.length; r += 1) {
    const length = runs[r];
    if (r % 2 === 1 && length > 0) {
      let x = Math.floor(index / height);
      let y = index - x * height;
      const end = Math.min(index + length, total);
      for (let i = index; i < end; i += 1) {
        const offset = y * width + x;
        labels[offset] = label;
        const o = offset * 4;
        rgba[o] = rgb[0];
        rgba[o + 1] = rgb[1];
        rgba[o + 2] = rgb[2];
        rgba[o + 3] = 255;
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
        y += 1;
        if (y === height) {
          y = 0;
          x += 1;
        }
      }
    }
    index += length;
  }
  return x1 < 0 ? null : [x0, y0, x1, y1];
}
