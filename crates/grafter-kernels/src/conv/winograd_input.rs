//! Winograd F(2×2, 3×3)'s input transform `V = Bᵀ·d·B`
//! (Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]) for a run of consecutive tile rows of
//! one input plane at once.
//!
//! Why a run and not a tile row: the arithmetic is a few additions per element, so the cost is
//! in loop overhead and memory traffic. The input lines are split into even and odd columns and
//! stored by row parity, which turns both halves of the transform into long contiguous loops
//! over the whole run (tile rows × columns): down the columns, tile row `i` reads padded rows
//! `2i .. 2i + 3`, i.e. rows `i` and `i + 1` of the even-row and odd-row arrays, one array row
//! apart; along the rows, tile `tx` reads even and odd columns `tx` and `tx + 1`, one element
//! apart. Tile rows of 4–28 tiles (ResNet's 7×7–56×56 maps) are too short to vectorise one by
//! one. The operations are those of the per-tile formula, in the same order: the results are
//! the same bit for bit.

use super::geometry::ConvGeometry;

/// Scratch elements [`transform_input_rows`] needs for up to `rows` tile rows of `tw` tiles.
pub(super) fn scratch_len(tw: usize, rows: usize) -> usize {
    let len = tw + 1;
    4 * (rows + 1) * len + 8 * rows * len + rows * len
}

/// `phases[p][k] = line[P·k + p − pw]`, zero outside the line: the line split into its `P`
/// column phases, so that the columns a tile reads become one element of each phase (F(2×2,
/// 3×3): even and odd columns; F(4×4, 3×3): columns mod 4).
pub(super) fn split_phases<const P: usize>(line: &[f32], pw: usize, phases: [&mut [f32]; P]) {
    let at = |i: isize| {
        if i >= 0 && (i as usize) < line.len() {
            line[i as usize]
        } else {
            0.0
        }
    };
    let n = phases[0].len();
    // k in [lo, hi) reads all P columns inside the line.
    let lo = pw.div_ceil(P).min(n);
    let hi = ((line.len() + pw) / P).clamp(lo, n);
    for (p, phase) in phases.into_iter().enumerate() {
        for k in (0..lo).chain(hi..n) {
            phase[k] = at((P * k + p) as isize - pw as isize);
        }
        if hi > lo {
            let groups = line[P * lo - pw..][..P * (hi - lo)].chunks_exact(P);
            for (v, group) in phase[lo..hi].iter_mut().zip(groups) {
                *v = group[p];
            }
        }
    }
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
    let (_, tw) = super::winograd::F2.tiles(geo);
    let len = tw + 1;
    let pairs = (rows + 1) * len;
    let flat = rows * len;
    let (lines, rest) = scratch.split_at_mut(4 * pairs);
    let (cols, rest) = rest.split_at_mut(8 * flat);
    let tmp = &mut rest[..flat];

    // lines[(2·column_parity + row_parity)]: padded rows 2·(ty0 + q) + row_parity − pad,
    // q = 0 ..= rows, their even or odd columns.
    let [ph, pw] = geo.pad;
    {
        let (even_even, rest) = lines.split_at_mut(pairs);
        let (even_odd, rest) = rest.split_at_mut(pairs);
        let (odd_even, odd_odd) = rest.split_at_mut(pairs);
        for q in 0..=rows {
            for (row_parity, even, odd) in [
                (0, &mut *even_even, &mut *odd_even),
                (1, &mut *even_odd, &mut *odd_odd),
            ] {
                let (even, odd) = (&mut even[q * len..][..len], &mut odd[q * len..][..len]);
                let iy = (2 * (ty0 + q) + row_parity) as isize - ph as isize;
                if iy < 0 || iy >= geo.h as isize {
                    even.fill(0.0);
                    odd.fill(0.0);
                } else {
                    let line = &src[iy as usize * geo.w..][..geo.w];
                    split_phases(line, pw, [even, odd]);
                }
            }
        }
    }

    // Down the columns (Bᵀ·d) for even and odd columns: d0 = row-even[i], d1 = row-odd[i],
    // d2 = row-even[i + 1], d3 = row-odd[i + 1]; cols[4·column_parity + r] holds row r.
    for parity in 0..2 {
        let row_even = &lines[2 * parity * pairs..][..pairs];
        let row_odd = &lines[(2 * parity + 1) * pairs..][..pairs];
        let out = &mut cols[4 * parity * flat..][..4 * flat];
        let (c0, rest) = out.split_at_mut(flat);
        let (c1, rest) = rest.split_at_mut(flat);
        let (c2, c3) = rest.split_at_mut(flat);
        let (d0, d2) = (&row_even[..flat], &row_even[len..][..flat]);
        let (d1, d3) = (&row_odd[..flat], &row_odd[len..][..flat]);
        for i in 0..flat {
            c0[i] = d0[i] - d2[i];
            c1[i] = d1[i] + d2[i];
            c2[i] = d2[i] - d1[i];
            c3[i] = d1[i] - d3[i];
        }
    }

    // Along the rows (·B), one transformed element e = 4·r + c at a time, over the whole run
    // (the element after each tile row's last tile is computed and dropped).
    let n = flat - 1;
    for r in 0..4 {
        let even = &cols[r * flat..][..flat];
        let odd = &cols[(4 + r) * flat..][..flat];
        for c in 0..4 {
            let dst = &mut tmp[..n];
            match c {
                0 => (0..n).for_each(|j| dst[j] = even[j] - even[j + 1]),
                1 => (0..n).for_each(|j| dst[j] = odd[j] + even[j + 1]),
                2 => (0..n).for_each(|j| dst[j] = even[j + 1] - odd[j]),
                _ => (0..n).for_each(|j| dst[j] = odd[j] - odd[j + 1]),
            }
            let base = (r * 4 + c) * stride + offset;
            for i in 0..rows {
                v[base + i * tw..][..tw].copy_from_slice(&tmp[i * len..][..tw]);
            }
        }
    }
}
