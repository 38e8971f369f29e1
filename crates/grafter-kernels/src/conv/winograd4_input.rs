//! Winograd F(4×4, 3×3)'s input transform `V = Bᵀ·d·B` for a run of consecutive tile rows of
//! one input plane at once (Bᵀ in [`super::winograd4`]).
//!
//! As for F(2×2, 3×3) ([`super::winograd_input`]), the cost is loop overhead and memory
//! traffic, not arithmetic, so both halves of the transform are long contiguous loops over the
//! whole run: the input lines are split into their four column phases (`x mod 4`) and stored
//! by row phase (`y mod 4`). Down the columns, tile row `i` reads padded rows `4i .. 4i + 5`:
//! row `i` of the four row-phase arrays and row `i + 1` of the first two. Along the rows, tile
//! `tx` reads columns `4tx .. 4tx + 5`: element `tx` of the four column phases and element
//! `tx + 1` of the first two.

use super::geometry::ConvGeometry;
use super::winograd_input::split_phases;
use super::winograd4::F4;

/// Scratch elements [`transform_input_rows`] needs for up to `rows` tile rows of `tw` tiles.
pub(super) fn scratch_len(tw: usize, rows: usize) -> usize {
    let len = tw + 1;
    16 * (rows + 1) * len + 24 * rows * len + rows * len
}

/// `Bᵀ·(d0 .. d5)`.
#[inline(always)]
fn b_times(d: [f32; 6]) -> [f32; 6] {
    let (d13, d24) = (d[3] - d[1], d[4] - d[2]);
    [
        4.0 * d[0] - 5.0 * d[2] + d[4],
        (d[3] + d[4]) - 4.0 * (d[1] + d[2]),
        (d[4] - d[3]) + 4.0 * (d[1] - d[2]),
        d24 + 2.0 * d13,
        d24 - 2.0 * d13,
        4.0 * d[1] - 5.0 * d[3] + d[5],
    ]
}

/// Transforms tile rows `ty0 .. ty0 + rows` of the plane `src` (padding read as zeros) and
/// writes transformed element `e` of tile `(i, tx)` (`i` counted from `ty0`) to
/// `v[e · stride + offset + i · tw + tx]`.
pub(super) fn transform_input_rows(
    geo: &ConvGeometry,
    src: &[f32],
    (ty0, rows): (usize, usize),
    scratch: &mut [f32],
    v: &mut [f32],
    (offset, stride): (usize, usize),
) {
    let (_, tw) = F4.tiles(geo);
    let len = tw + 1;
    let group = (rows + 1) * len;
    let flat = rows * len;
    let (lines, rest) = scratch.split_at_mut(16 * group);
    let (cols, rest) = rest.split_at_mut(24 * flat);
    let tmp = &mut rest[..flat];

    // lines[(4·row_phase + column_phase) · group + q · len + k]: padded row
    // 4·(ty0 + q) + row_phase − pad, column 4·k + column_phase − pad, q = 0 ..= rows.
    let [ph, pw] = geo.pad;
    for (row_phase, by_column) in lines.chunks_exact_mut(4 * group).enumerate() {
        let (p0, rest) = by_column.split_at_mut(group);
        let (p1, rest) = rest.split_at_mut(group);
        let (p2, p3) = rest.split_at_mut(group);
        for q in 0..=rows {
            let at = q * len..(q + 1) * len;
            let phases = [
                &mut p0[at.clone()],
                &mut p1[at.clone()],
                &mut p2[at.clone()],
                &mut p3[at],
            ];
            let iy = (4 * (ty0 + q) + row_phase) as isize - ph as isize;
            if iy < 0 || iy >= geo.h as isize {
                phases.into_iter().for_each(|p| p.fill(0.0));
            } else {
                split_phases(&src[iy as usize * geo.w..][..geo.w], pw, phases);
            }
        }
    }

    // Down the columns (Bᵀ·d), per column phase: cols[(6·column_phase + r) · flat + j].
    for phase in 0..4 {
        let d = |row_phase: usize, next: usize| {
            &lines[(4 * row_phase + phase) * group + next * len..][..flat]
        };
        let (d0, d1, d2, d3, d4, d5) = (d(0, 0), d(1, 0), d(2, 0), d(3, 0), d(0, 1), d(1, 1));
        let out = &mut cols[6 * phase * flat..][..6 * flat];
        let (c0, rest) = out.split_at_mut(flat);
        let (c1, rest) = rest.split_at_mut(flat);
        let (c2, rest) = rest.split_at_mut(flat);
        let (c3, rest) = rest.split_at_mut(flat);
        let (c4, c5) = rest.split_at_mut(flat);
        for j in 0..flat {
            let t = b_times([d0[j], d1[j], d2[j], d3[j], d4[j], d5[j]]);
            c0[j] = t[0];
            c1[j] = t[1];
            c2[j] = t[2];
            c3[j] = t[3];
            c4[j] = t[4];
            c5[j] = t[5];
        }
    }

    // Along the rows (·B), one transformed element e = 6·r + c at a time, over the whole run
    // (the element after each tile row's last tile is computed and dropped).
    let n = flat - 1;
    for r in 0..6 {
        let e = |phase: usize, next: usize| &cols[(6 * phase + r) * flat + next..][..n];
        let (e0, e1, e2, e3, e4, e5) = (e(0, 0), e(1, 0), e(2, 0), e(3, 0), e(0, 1), e(1, 1));
        for c in 0..6 {
            let dst = &mut tmp[..n];
            match c {
                0 => (0..n).for_each(|j| dst[j] = 4.0 * e0[j] - 5.0 * e2[j] + e4[j]),
                1 => (0..n).for_each(|j| dst[j] = (e3[j] + e4[j]) - 4.0 * (e1[j] + e2[j])),
                2 => (0..n).for_each(|j| dst[j] = (e4[j] - e3[j]) + 4.0 * (e1[j] - e2[j])),
                3 => (0..n).for_each(|j| dst[j] = (e4[j] - e2[j]) + 2.0 * (e3[j] - e1[j])),
                4 => (0..n).for_each(|j| dst[j] = (e4[j] - e2[j]) - 2.0 * (e3[j] - e1[j])),
                _ => (0..n).for_each(|j| dst[j] = 4.0 * e1[j] - 5.0 * e3[j] + e5[j]),
            }
            let base = (r * 6 + c) * stride + offset;
            for i in 0..rows {
                v[base + i * tw..][..tw].copy_from_slice(&tmp[i * len..][..tw]);
            }
        }
    }
}
