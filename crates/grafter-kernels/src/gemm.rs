//! The one matrix product every kernel here is built on: gemm's, with explicit strides, so that
//! operands are read where they lie (NCHW planes, transposed weights) instead of being copied.

/// A read-only strided matrix view: element `(i, j)` at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(crate) struct Mat {
    pub ptr: *const f32,
    pub rs: isize,
    pub cs: isize,
}

/// A writable strided matrix view.
#[derive(Clone, Copy)]
pub(crate) struct MatMut {
    pub ptr: *mut f32,
    pub rs: isize,
    pub cs: isize,
}

/// A row-major `[rows, cols]` matrix starting at `ptr` whose rows are `ld` elements apart.
pub(crate) fn rows(ptr: *const f32, ld: usize) -> Mat {
    Mat {
        ptr,
        rs: ld as isize,
        cs: 1,
    }
}

/// The transpose of a row-major matrix whose rows are `ld` elements apart.
pub(crate) fn rows_t(ptr: *const f32, ld: usize) -> Mat {
    Mat {
        ptr,
        rs: 1,
        cs: ld as isize,
    }
}

/// A writable row-major matrix whose rows are `ld` elements apart.
pub(crate) fn rows_mut(ptr: *mut f32, ld: usize) -> MatMut {
    MatMut {
        ptr,
        rs: ld as isize,
        cs: 1,
    }
}

/// Who computes one product: the calling thread alone (the caller already runs one task per
/// thread), or every rayon thread (a single large product).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Threads {
    One,
    All,
}

/// `dst[m, n] = lhs[m, k] · rhs[k, n]`, or `dst += lhs · rhs` with `accumulate`.
///
/// # Safety
/// The three views must address valid, non-overlapping memory for the given sizes, and nothing
/// else may access `dst`'s elements during the call.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: MatMut,
    accumulate: bool,
    lhs: Mat,
    rhs: Mat,
    threads: Threads,
) {
    if m == 0 || n == 0 {
        return;
    }
    let parallelism = match threads {
        Threads::One => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(0),
    };
    // gemm computes dst := alpha·dst + beta·lhs·rhs, reading dst only when asked to.
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            dst.cs,
            dst.rs,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A raw pointer that may cross into rayon tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);

impl SendPtr {
    /// The pointer.
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: every task writes a disjoint region (each kernel documents which).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
