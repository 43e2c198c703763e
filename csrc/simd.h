// 512-bit vectors for the CPU kernels (GCC / Clang vector extension; the compiler lowers them to AVX-512,
// AVX2 pairs or SSE as the target allows). Explicit vectors keep accumulators in registers where
// auto-vectorization produced gathers or spills.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <new>
#include <utility>

namespace fastnoise {

// One vector of T (unaligned, may alias its elements).
template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(64), aligned(sizeof(T)), may_alias));
};

template <typename T>
constexpr int kVW = 64 / static_cast<int>(sizeof(T));  // elements per vector

template <typename T>
inline typename Vec<T>::type vload(const T* p) {
  return *reinterpret_cast<const typename Vec<T>::type*>(p);
}

template <typename T>
inline void vstore(T* p, typename Vec<T>::type v) {
  *reinterpret_cast<typename Vec<T>::type*>(p) = v;
}

// Sum of the lanes in a fixed order (results never depend on the build's vector width).
template <typename T>
inline T hsum(typename Vec<T>::type v) {
  T s = T(0);
  for (int l = 0; l < kVW<T>; ++l) s += v[l];
  return s;
}

// Native-width vectors for register tiles: one vector register of the ISA this file is compiled for (64
// bytes with AVX-512, 32 with AVX / AVX2, 16 otherwise) and the number of such registers. A 64-byte Vec is
// kParts<T> native vectors; a tile of Vecs that fits AVX-512's 32 zmm registers spills on AVX2's 16 ymm
// ones (GCC then also builds scalar broadcasts through the stack), so the register-tiled kernels size their
// tiles in native vectors (kNatRegs). Lane-wise arithmetic is the same on every ISA, so a kernel that keeps
// each element's order of operations gives the same bits whatever the native width.
#if defined(__AVX512F__)
constexpr int kNatBytes = 64, kNatRegs = 32;
#elif defined(__AVX__)
constexpr int kNatBytes = 32, kNatRegs = 16;
#else
constexpr int kNatBytes = 16, kNatRegs = 16;
#endif

template <typename T>
struct NVec {
  typedef T type __attribute__((vector_size(kNatBytes), aligned(sizeof(T)), may_alias));
};

template <typename T>
constexpr int kNW = kNatBytes / static_cast<int>(sizeof(T));  // elements per native vector

template <typename T>
constexpr int kParts = kVW<T> / kNW<T>;  // native vectors per Vec

template <typename T>
inline typename NVec<T>::type nload(const T* p) {
  return *reinterpret_cast<const typename NVec<T>::type*>(p);
}

template <typename T>
inline void nstore(T* p, typename NVec<T>::type v) {
  *reinterpret_cast<typename NVec<T>::type*>(p) = v;
}

// every lane = s (one broadcast instruction)
template <typename T>
inline typename NVec<T>::type nsplat(T s) {
  return typename NVec<T>::type{} + s;
}

// A thread-local work buffer of n elements aligned to 64 bytes, so that every vector load is one cache line.
template <typename T>
class VecBuffer {
 public:
  explicit VecBuffer(int64_t n) {
    const size_t bytes = (static_cast<size_t>(n > 0 ? n : 1) * sizeof(T) + 63) / 64 * 64;
    p_ = static_cast<T*>(std::aligned_alloc(64, bytes));
    if (p_ == nullptr) throw std::bad_alloc();
  }
  ~VecBuffer() { std::free(p_); }
  VecBuffer(const VecBuffer&) = delete;
  VecBuffer& operator=(const VecBuffer&) = delete;
  T* data() const { return p_; }
  T& operator[](int64_t i) const { return p_[i]; }

 private:
  T* p_;
};

// In-register transpose of kVW x kVW elements (vector-extension shuffles): stage S swaps the off-diagonal
// S x S blocks of every 2S x 2S block; stages S = kVW/2 .. 1 transpose the whole block.
template <typename V, int N, int S, int... I>
inline void swap_blocks(V& a, V& b, std::integer_sequence<int, I...>) {
  const V lo = __builtin_shufflevector(a, b, ((I & S) ? N + I - S : I)...);
  const V hi = __builtin_shufflevector(a, b, ((I & S) ? N + I : I + S)...);
  a = lo;
  b = hi;
}

template <typename T, int S>
inline void transpose_stage(typename Vec<T>::type* r) {
  constexpr int N = kVW<T>;
#pragma GCC unroll 16
  for (int i = 0; i < N; ++i)
    if (!(i & S)) swap_blocks<typename Vec<T>::type, N, S>(r[i], r[i + S], std::make_integer_sequence<int, N>{});
  if constexpr (S > 1) transpose_stage<T, S / 2>(r);
}

// r[i][j] <- r[j][i] for the kVW vectors r[0 .. kVW).
template <typename T>
inline void transpose_vectors(typename Vec<T>::type* r) {
  transpose_stage<T, kVW<T> / 2>(r);
}

}  // namespace fastnoise
