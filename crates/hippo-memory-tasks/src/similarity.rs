//! Cosine similarity at scale: every pair of `n` unit vectors above a threshold,
//! without comparing a vector with itself; groups as stars around a centre
//! ([`star_groups`], what deduplication merges) or as connected components
//! (union-find, what the health report counts).
//!
//! The search is a blocked matrix product `X · Xᵀ` computed for the upper triangle
//! only (`j > i`): rows are packed into panels of 6 and 16 vectors laid out
//! component-major, and a 6×16 register tile is accumulated over the dimension with
//! fused multiply-adds (AVX2 + FMA when the CPU has them, portable code otherwise).
//! A 16-vector panel (24 KiB at 384 dimensions) stays in L1 while 16 panels of 6 rows
//! stream from L2. Threshold tests are done on the tile in registers, so only hits are
//! written out. Row blocks are handed to `threads` scoped threads through an atomic
//! counter, which balances the triangle's uneven rows.
//!
//! ```
//! use hippo_memory_tasks::similarity::{Matrix, Search, similar_groups, similar_pairs};
//! let rows: Vec<Vec<f32>> = vec![
//!     vec![1.0, 0.0, 0.0],
//!     vec![0.0, 1.0, 0.0],
//!     vec![0.99, 0.01, 0.0], // a near copy of row 0
//!     vec![1.0, 0.0, 0.0],   // an exact copy of row 0
//! ];
//! let m = Matrix::from_rows(3, rows.iter().map(|r| r.as_slice()))?;
//! let pairs = similar_pairs(&m, &Search::above(0.88), 100)?;
//! assert_eq!(pairs.len(), 3); // (0,2), (0,3), (2,3): never (i,i)
//! let groups = similar_groups(&m, &Search::above(0.88))?;
//! assert_eq!(groups, vec![vec![0, 2, 3]]);
//! # Ok::<(), hippo_memory_tasks::similarity::SimilarityError>(())
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Rows per register tile.
const MR: usize = 6;
/// Columns per register tile (two 8-lane vectors).
const NR: usize = 16;
/// Row panels per work item.
const PANELS_PER_BLOCK: usize = 16;

/// Why a search did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimilarityError {
    /// A vector has the wrong number of components.
    #[error("vector {index} has {got} components, expected {expected}")]
    Dimension {
        /// Its position.
        index: usize,
        /// Its length.
        got: usize,
        /// The matrix's dimension.
        expected: usize,
    },
    /// The stop flag was raised.
    #[error("similarity search stopped before the end")]
    Stopped,
    /// More pairs matched than the caller accepts.
    #[error("more than {0} similar pairs: raise the threshold")]
    TooManyPairs(usize),
}

/// Scales a vector to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        for x in v {
            *x /= norm;
        }
    }
}

/// Dot product (the cosine of two unit vectors).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len().min(b.len()) / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for k in chunks * 8..a.len().min(b.len()) {
        s += a[k] * b[k];
    }
    s
}

/// `n` unit vectors of one dimension, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    n: usize,
    dim: usize,
    data: Vec<f32>,
}

impl Matrix {
    /// Copies and normalises the rows; each must have `dim` components.
    pub fn from_rows<'a>(
        dim: usize,
        rows: impl IntoIterator<Item = &'a [f32]>,
    ) -> Result<Self, SimilarityError> {
        let mut data = Vec::new();
        let mut n = 0;
        for (index, r) in rows.into_iter().enumerate() {
            if r.len() != dim {
                return Err(SimilarityError::Dimension {
                    index,
                    got: r.len(),
                    expected: dim,
                });
            }
            let start = data.len();
            data.extend_from_slice(r);
            normalize(&mut data[start..]);
            n += 1;
        }
        Ok(Matrix { n, dim, data })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Components per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// One row.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// What to look for: pairs scoring above a threshold (strictly, or inclusively), on
/// how many threads, with an optional stop flag checked between row blocks.
#[derive(Debug, Clone, Copy)]
pub struct Search<'a> {
    /// The threshold.
    pub threshold: f32,
    /// `>=` instead of `>`.
    pub inclusive: bool,
    /// Worker threads (default: the available parallelism).
    pub threads: usize,
    /// Raised from outside to stop early with [`SimilarityError::Stopped`].
    pub stop: Option<&'a AtomicBool>,
}

impl<'a> Search<'a> {
    /// Pairs with similarity strictly above `threshold`.
    pub fn above(threshold: f32) -> Self {
        Search {
            threshold,
            inclusive: false,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            stop: None,
        }
    }

    /// Pairs with similarity at or above `threshold`.
    pub fn at_least(threshold: f32) -> Self {
        Search {
            inclusive: true,
            ..Search::above(threshold)
        }
    }

    /// Uses this many threads.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Stops when `flag` is raised.
    pub fn stop_on(mut self, flag: &'a AtomicBool) -> Self {
        self.stop = Some(flag);
        self
    }
}

/// A matching pair, `i < j`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// The first row.
    pub i: u32,
    /// The second row.
    pub j: u32,
    /// Their cosine similarity.
    pub score: f32,
}

/// Disjoint sets over `0..n` (union by size, path halving).
#[derive(Debug, Clone)]
pub struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    /// `n` singletons.
    pub fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
        }
    }

    /// The representative of `x`.
    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = self.parent[x as usize];
        }
        x
    }

    /// Joins the sets of `a` and `b`; false when they were already one.
    pub fn union(&mut self, a: u32, b: u32) -> bool {
        let (mut ra, mut rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        if self.size[ra as usize] < self.size[rb as usize] {
            std::mem::swap(&mut ra, &mut rb);
        }
        self.parent[rb as usize] = ra;
        self.size[ra as usize] += self.size[rb as usize];
        true
    }

    /// Sets of two or more, each sorted, ordered by their smallest member.
    pub fn groups(&mut self) -> Vec<Vec<usize>> {
        let n = self.parent.len();
        let mut by_root: std::collections::HashMap<u32, Vec<usize>> = Default::default();
        for x in 0..n {
            let r = self.find(x as u32);
            if self.size[r as usize] > 1 {
                by_root.entry(r).or_default().push(x);
            }
        }
        let mut out: Vec<Vec<usize>> = by_root.into_values().collect();
        out.sort_by_key(|g| g[0]);
        out
    }
}

/// A group around one centre: every member matched the centre itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Star {
    /// The centre (the survivor of a merge).
    pub center: usize,
    /// The members and their similarity to the centre, most similar first.
    pub members: Vec<(usize, f32)>,
}

/// Stars over matching pairs: candidates are taken as centres in `order`
/// (preferred first); a centre not yet grouped takes every ungrouped neighbour that
/// `accept(center, member)` allows. Unlike connected components, a star never joins
/// two rows through a third: A~B and B~C do not put C with A.
///
/// ```
/// use hippo_memory_tasks::similarity::{Pair, Star, star_groups};
/// let pairs = [Pair { i: 0, j: 1, score: 0.9 }, Pair { i: 1, j: 2, score: 0.9 }];
/// let stars = star_groups(3, &pairs, &[0, 1, 2], |_, _| true);
/// assert_eq!(stars, vec![Star { center: 0, members: vec![(1, 0.9)] }]); // 2 stays apart
/// ```
pub fn star_groups(
    n: usize,
    pairs: &[Pair],
    order: &[usize],
    accept: impl Fn(usize, usize) -> bool,
) -> Vec<Star> {
    let mut neighbours: Vec<Vec<(usize, f32)>> = vec![Vec::new(); n];
    for p in pairs {
        let (i, j) = (p.i as usize, p.j as usize);
        if i < n && j < n {
            neighbours[i].push((j, p.score));
            neighbours[j].push((i, p.score));
        }
    }
    let mut taken = vec![false; n];
    let mut out = Vec::new();
    for &c in order {
        if c >= n || taken[c] {
            continue;
        }
        let mut members: Vec<(usize, f32)> = neighbours[c]
            .iter()
            .copied()
            .filter(|&(j, _)| !taken[j] && accept(c, j))
            .collect();
        if members.is_empty() {
            continue;
        }
        members.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        taken[c] = true;
        for &(j, _) in &members {
            taken[j] = true;
        }
        out.push(Star { center: c, members });
    }
    out
}

/// Every pair above the threshold (at most `max_pairs`, else
/// [`SimilarityError::TooManyPairs`]), sorted by `(i, j)`.
pub fn similar_pairs(
    m: &Matrix,
    search: &Search<'_>,
    max_pairs: usize,
) -> Result<Vec<Pair>, SimilarityError> {
    let sinks = drive(m, search, || PairSink {
        pairs: Vec::new(),
        cap: max_pairs,
    })?;
    let mut pairs: Vec<Pair> = sinks.into_iter().flat_map(|s| s.pairs).collect();
    if pairs.len() > max_pairs {
        return Err(SimilarityError::TooManyPairs(max_pairs));
    }
    pairs.sort_by_key(|p| (p.i, p.j));
    Ok(pairs)
}

/// The connected components of the "above the threshold" graph with two or more
/// members: each sorted, ordered by smallest member. Memory stays `O(n)` however many
/// pairs match.
pub fn similar_groups(m: &Matrix, search: &Search<'_>) -> Result<Vec<Vec<usize>>, SimilarityError> {
    let n = m.len();
    let sinks = drive(m, search, || ForestSink {
        uf: UnionFind::new(n),
        edges: Vec::new(),
    })?;
    let mut uf = UnionFind::new(n);
    for s in sinks {
        for (a, b) in s.edges {
            uf.union(a, b);
        }
    }
    Ok(uf.groups())
}

trait Sink: Send {
    fn hit(&mut self, i: usize, j: usize, score: f32);
    fn overflowed(&self) -> bool;
}

struct PairSink {
    pairs: Vec<Pair>,
    cap: usize,
}

impl Sink for PairSink {
    fn hit(&mut self, i: usize, j: usize, score: f32) {
        if self.pairs.len() <= self.cap {
            self.pairs.push(Pair {
                i: i as u32,
                j: j as u32,
                score,
            });
        }
    }
    fn overflowed(&self) -> bool {
        self.pairs.len() > self.cap
    }
}

struct ForestSink {
    uf: UnionFind,
    edges: Vec<(u32, u32)>,
}

impl Sink for ForestSink {
    fn hit(&mut self, i: usize, j: usize, _score: f32) {
        if self.uf.union(i as u32, j as u32) {
            self.edges.push((i as u32, j as u32));
        }
    }
    fn overflowed(&self) -> bool {
        false
    }
}

/// Rows packed in panels of `width`, component-major within a panel:
/// `out[(panel * dim + k) * width + r] = row(panel * width + r)[k]`, zero-padded.
fn pack(m: &Matrix, width: usize) -> Vec<f32> {
    let panels = m.n.div_ceil(width);
    let d = m.dim;
    let mut out = vec![0f32; panels * d * width];
    for (i, row) in m.data.chunks_exact(d).enumerate() {
        let (p, r) = (i / width, i % width);
        let base = p * d * width + r;
        for (k, x) in row.iter().enumerate() {
            out[base + k * width] = *x;
        }
    }
    out
}

type Kernel = unsafe fn(*const f32, *const f32, usize, f32, bool, &mut [f32; MR * NR]) -> u128;

/// The 6×16 tile `A · Bᵀ` of packed panels (portable), with the threshold mask.
///
/// # Safety
/// `a` must point to `d * MR` and `b` to `d * NR` readable floats.
unsafe fn kernel_portable(
    a: *const f32,
    b: *const f32,
    d: usize,
    threshold: f32,
    inclusive: bool,
    tile: &mut [f32; MR * NR],
) -> u128 {
    // SAFETY: the caller guarantees both panels hold `d` steps.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, d * MR),
            std::slice::from_raw_parts(b, d * NR),
        )
    };
    let mut c = [[0f32; NR]; MR];
    for (ak, bk) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for (ci, av) in c.iter_mut().zip(ak) {
            for (cij, bv) in ci.iter_mut().zip(bk) {
                *cij += av * bv;
            }
        }
    }
    let mut mask = 0u128;
    for (ii, ci) in c.iter().enumerate() {
        for (jj, v) in ci.iter().enumerate() {
            let hit = if inclusive {
                *v >= threshold
            } else {
                *v > threshold
            };
            if hit {
                mask |= 1u128 << (ii * NR + jj);
            }
            tile[ii * NR + jj] = *v;
        }
    }
    mask
}

/// The AVX2 + FMA version of [`kernel_portable`].
///
/// # Safety
/// As [`kernel_portable`], and the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(
    a: *const f32,
    b: *const f32,
    d: usize,
    threshold: f32,
    inclusive: bool,
    tile: &mut [f32; MR * NR],
) -> u128 {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees the panels' extent and the CPU features; every
    // load stays within `d * MR` (a) and `d * NR` (b) floats.
    unsafe {
        let mut c = [[_mm256_setzero_ps(); 2]; MR];
        let mut ap = a;
        let mut bp = b;
        for _ in 0..d {
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            for (ii, ci) in c.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*ap.add(ii));
                ci[0] = _mm256_fmadd_ps(av, b0, ci[0]);
                ci[1] = _mm256_fmadd_ps(av, b1, ci[1]);
            }
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
        let t = _mm256_set1_ps(threshold);
        let mut mask = 0u128;
        for (ii, ci) in c.iter().enumerate() {
            for (h, v) in ci.iter().enumerate() {
                let m = if inclusive {
                    _mm256_cmp_ps::<_CMP_GE_OQ>(*v, t)
                } else {
                    _mm256_cmp_ps::<_CMP_GT_OQ>(*v, t)
                };
                let bits = _mm256_movemask_ps(m) as u32 as u128;
                mask |= bits << (ii * NR + h * 8);
            }
        }
        if mask != 0 {
            for (ii, ci) in c.iter().enumerate() {
                for (h, v) in ci.iter().enumerate() {
                    _mm256_storeu_ps(tile.as_mut_ptr().add(ii * NR + h * 8), *v);
                }
            }
        }
        mask
    }
}

fn kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return kernel_avx2;
        }
    }
    kernel_portable
}

/// Which kernel [`similar_pairs`] and [`similar_groups`] use on this CPU.
pub fn kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx2+fma";
        }
    }
    "portable"
}

fn drive<S: Sink>(
    m: &Matrix,
    search: &Search<'_>,
    make: impl Fn() -> S + Sync,
) -> Result<Vec<S>, SimilarityError> {
    let n = m.n;
    if n < 2 {
        return Ok(Vec::new());
    }
    let d = m.dim;
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| pack(m, MR));
        let b = pack(m, NR);
        (a.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), b)
    });
    let row_panels = n.div_ceil(MR);
    let col_panels = n.div_ceil(NR);
    let blocks = row_panels.div_ceil(PANELS_PER_BLOCK);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let kernel = kernel();
    let threads = search.threads.clamp(1, blocks.max(1));
    let work = || -> Result<S, SimilarityError> {
        let mut sink = make();
        let mut tile = [0f32; MR * NR];
        loop {
            let blk = next.fetch_add(1, Ordering::Relaxed);
            if blk >= blocks || failed.load(Ordering::Relaxed) {
                return Ok(sink);
            }
            if search.stop.is_some_and(|f| f.load(Ordering::Relaxed)) {
                failed.store(true, Ordering::Relaxed);
                return Err(SimilarityError::Stopped);
            }
            let q0 = blk * PANELS_PER_BLOCK;
            let q1 = (q0 + PANELS_PER_BLOCK).min(row_panels);
            for p in (q0 * MR) / NR..col_panels {
                let col0 = p * NR;
                let bp = &b[p * d * NR..(p + 1) * d * NR];
                for q in q0..q1 {
                    let row0 = q * MR;
                    if col0 + NR <= row0 + 1 {
                        continue;
                    }
                    let ap = &a[q * d * MR..(q + 1) * d * MR];
                    // SAFETY: `ap` holds d * MR and `bp` d * NR floats; the kernel was
                    // chosen for this CPU.
                    let mut mask = unsafe {
                        kernel(
                            ap.as_ptr(),
                            bp.as_ptr(),
                            d,
                            search.threshold,
                            search.inclusive,
                            &mut tile,
                        )
                    };
                    while mask != 0 {
                        let bit = mask.trailing_zeros() as usize;
                        mask &= mask - 1;
                        let (i, j) = (row0 + bit / NR, col0 + bit % NR);
                        if j > i && j < n {
                            sink.hit(i, j, tile[bit]);
                        }
                    }
                }
            }
            if sink.overflowed() {
                failed.store(true, Ordering::Relaxed);
                return Ok(sink);
            }
        }
    };
    let results: Vec<Result<S, SimilarityError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut out = vec![work()];
        for h in handles {
            out.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        out
    });
    results.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    }

    fn random(n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut s = seed;
        (0..n)
            .map(|_| (0..d).map(|_| lcg(&mut s)).collect())
            .collect()
    }

    fn brute(m: &Matrix, t: f32, inclusive: bool) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for i in 0..m.len() {
            for j in i + 1..m.len() {
                let s = dot(m.row(i), m.row(j));
                if (inclusive && s >= t) || (!inclusive && s > t) {
                    out.push((i as u32, j as u32));
                }
            }
        }
        out
    }

    #[test]
    fn matches_brute_force_on_odd_sizes() {
        for (n, d) in [(1, 8), (2, 3), (7, 5), (37, 17), (203, 64), (300, 384)] {
            let mut rows = random(n, d, n as u64);
            // plant near copies
            for k in (0..n).step_by(5) {
                if k + 1 < n {
                    let mut v = rows[k].clone();
                    v[0] += 0.01;
                    rows[k + 1] = v;
                }
            }
            let m = Matrix::from_rows(d, rows.iter().map(|r| r.as_slice())).unwrap();
            for threads in [1, 2, 3] {
                let got: Vec<(u32, u32)> =
                    similar_pairs(&m, &Search::above(0.5).threads(threads), 1 << 20)
                        .unwrap()
                        .iter()
                        .map(|p| (p.i, p.j))
                        .collect();
                let want = brute(&m, 0.5, false);
                let got_set: std::collections::HashSet<_> = got.iter().collect();
                // allow float disagreement only at the exact boundary
                for w in &want {
                    assert!(
                        got_set.contains(w)
                            || (dot(m.row(w.0 as usize), m.row(w.1 as usize)) - 0.5).abs() < 1e-5,
                        "missing {w:?} for n={n}"
                    );
                }
                assert!(got.iter().all(|(i, j)| i < j));
            }
        }
    }

    #[test]
    fn portable_and_native_kernels_agree() {
        let d = 384;
        let rows = random(MR.max(NR), d, 9);
        let m = Matrix::from_rows(d, rows.iter().map(|r| r.as_slice())).unwrap();
        let (a, b) = (pack(&m, MR), pack(&m, NR));
        let (mut t1, mut t2) = ([0f32; MR * NR], [0f32; MR * NR]);
        // SAFETY: both panels hold d steps.
        let m1 = unsafe { kernel_portable(a.as_ptr(), b.as_ptr(), d, -2.0, false, &mut t1) };
        let m2 = unsafe { kernel()(a.as_ptr(), b.as_ptr(), d, -2.0, false, &mut t2) };
        assert_eq!(m1, m2);
        for (x, y) in t1.iter().zip(&t2) {
            assert!((x - y).abs() < 1e-4);
        }
    }

    #[test]
    fn groups_and_stop() {
        let rows = [
            vec![1.0, 0.0],
            vec![0.0, 1.0],
            vec![1.0, 0.001],
            vec![0.001, 1.0],
            vec![-1.0, 0.0],
        ];
        let m = Matrix::from_rows(2, rows.iter().map(|r| r.as_slice())).unwrap();
        assert_eq!(
            similar_groups(&m, &Search::above(0.99)).unwrap(),
            vec![vec![0, 2], vec![1, 3]]
        );
        assert_eq!(
            similar_pairs(&m, &Search::at_least(1.0), 10).unwrap().len(),
            0
        );
        let stop = AtomicBool::new(true);
        assert_eq!(
            similar_groups(&m, &Search::above(0.5).stop_on(&stop)),
            Err(SimilarityError::Stopped)
        );
        assert_eq!(
            similar_pairs(&m, &Search::above(-2.0), 3),
            Err(SimilarityError::TooManyPairs(3))
        );
    }
}
