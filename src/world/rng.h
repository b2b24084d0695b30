// The world's random engine: xoshiro256** seeded through splitmix64, plus the few
// distributions the world needs, written out so that the output is the same with every standard
// library (std::uniform_*_distribution is implementation-defined).
#pragma once
#include <cmath>
#include <cstdint>

namespace mmb::world {

inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Independent streams of one sample: scene graph, render noise, task text, and the SFT turns
// (their own stream, so that the SFT mix knobs leave every evaluation task unchanged).
enum class Stream : uint64_t { kScene = 1, kRender = 2, kTasks = 3, kSftTurns = 4, kSftHint = 5 };

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    uint64_t s = seed;
    for (auto& w : s_) w = splitmix64(s);
  }
  // The engine of one sample: a hash of (seed, split, index, stream).
  static Rng for_sample(uint64_t seed, int split, int64_t index, Stream stream) {
    uint64_t h = seed;
    uint64_t a = splitmix64(h);
    h = a ^ (uint64_t(split) * 0xD6E8FEB86659FD93ull);
    uint64_t b = splitmix64(h);
    h = b ^ (uint64_t(index) * 0xA0761D6478BD642Full);
    uint64_t c = splitmix64(h);
    h = c ^ (uint64_t(stream) * 0xE7037ED1A0B428DBull);
    return Rng(splitmix64(h));
  }

  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1) with 53 bits.
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; bias < n / 2^64).
  int below(int n) { return int((unsigned __int128)next() * uint64_t(n) >> 64); }
  bool bernoulli(double p) { return uniform() < p; }
  // Approximately standard normal: Irwin–Hall sum of 4 uniforms, rescaled (cheap, bounded ±3.46).
  double normal() {
    double s = uniform() + uniform() + uniform() + uniform() - 2.0;
    return s * 1.7320508075688772;
  }
  // Index drawn with probability proportional to weights[i] (n > 0, sum > 0).
  template <typename W>
  int weighted(const W* weights, int n) {
    double total = 0;
    for (int i = 0; i < n; ++i) total += weights[i];
    double u = uniform() * total;
    for (int i = 0; i < n; ++i) {
      if (u < weights[i]) return i;
      u -= weights[i];
    }
    for (int i = n - 1; i >= 0; --i)
      if (weights[i] > 0) return i;
    return n - 1;
  }
  // Fisher–Yates shuffle of [first, first + n).
  template <typename T>
  void shuffle(T* first, int n) {
    for (int i = n - 1; i > 0; --i) {
      int j = below(i + 1);
      T tmp = first[i];
      first[i] = first[j];
      first[j] = tmp;
    }
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace mmb::world
