// Serialisable index streams: ShuffledIndices (epochs of seeded permutations) and
// ShardedIndexBatches (a rank's slice of every global batch).
#include <algorithm>
#include <random>

#include "mmb/distributed.h"
#include "mmb/error.h"
#include "mmb/train.h"

namespace mmb {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

ShuffledIndices::ShuffledIndices(int64_t size, uint64_t seed, bool shuffle, LengthGrouping grouping)
    : size_(size), seed_(seed), shuffle_(shuffle), grouping_(std::move(grouping)) {
  if (size <= 0) fail("ShuffledIndices: dataset size must be > 0, got ", size);
  auto& g = grouping_;
  if (g.megabatch < 0) fail("ShuffledIndices: length-grouping megabatch must be >= 0, got ", g.megabatch);
  if (g.lengths.empty()) g.megabatch = 0;
  if (g.megabatch > 0) {
    if (int64_t(g.lengths.size()) != size)
      fail("ShuffledIndices: ", g.lengths.size(), " lengths for a dataset of ", size, " items");
    if (g.batch <= 0 || g.megabatch % g.batch != 0)
      fail("ShuffledIndices: length-grouping megabatch ", g.megabatch, " is not a multiple of the batch ", g.batch);
  }
  make_order();
}

void ShuffledIndices::make_order() {
  order_.resize(size_t(size_));
  for (int64_t i = 0; i < size_; ++i) order_[size_t(i)] = i;
  if (!shuffle_) return;
  // std::mt19937_64's output is fixed by the standard; the bounded draw is ours (multiply-shift),
  // because std::uniform_int_distribution and std::shuffle differ between standard libraries.
  std::mt19937_64 rng(splitmix64(seed_ ^ splitmix64(uint64_t(epoch_))));
  auto below = [&](int64_t n) { return int64_t((static_cast<unsigned __int128>(rng()) * uint64_t(n)) >> 64); };
  for (int64_t i = size_ - 1; i > 0; --i) std::swap(order_[size_t(i)], order_[size_t(below(i + 1))]);
  const auto& g = grouping_;
  if (g.megabatch <= 0) return;
  // Longest first within each megabatch (ties keep the shuffled order), then its blocks of one
  // batch in a shuffled order, so that no stretch of steps sees only the longest (or shortest)
  // samples, e.g. one task of a mix.
  std::vector<int64_t> blocks;
  for (int64_t m = 0; m < size_; m += g.megabatch) {
    const auto first = order_.begin() + m, last = order_.begin() + std::min(size_, m + g.megabatch);
    std::stable_sort(first, last, [&](int64_t a, int64_t b) { return g.lengths[size_t(a)] > g.lengths[size_t(b)]; });
    const int64_t n = int64_t(last - first), nb = (n + g.batch - 1) / g.batch;
    if (nb < 2) continue;
    blocks.resize(size_t(nb));
    for (int64_t b = 0; b < nb; ++b) blocks[size_t(b)] = b;
    for (int64_t i = nb - 1; i > 0; --i) std::swap(blocks[size_t(i)], blocks[size_t(below(i + 1))]);
    const std::vector<int64_t> sorted(first, last);
    auto out = first;
    for (int64_t b : blocks) {
      const auto from = sorted.begin() + b * g.batch, to = sorted.begin() + std::min(n, (b + 1) * g.batch);
      out = std::copy(from, to, out);
    }
  }
}

std::vector<int64_t> ShuffledIndices::next(int64_t count) {
  if (count < 0) fail("ShuffledIndices::next: count must be >= 0, got ", count);
  std::vector<int64_t> out;
  out.reserve(size_t(count));
  while (int64_t(out.size()) < count) {
    if (position_ == size_) {
      ++epoch_;
      position_ = 0;
      make_order();
    }
    out.push_back(order_[size_t(position_++)]);
  }
  return out;
}

Json ShuffledIndices::state() const {
  return Json{{"size", size_},   {"seed", seed_},         {"shuffle", shuffle_},
              {"epoch", epoch_}, {"position", position_}, {"megabatch", grouping_.megabatch}};
}

void ShuffledIndices::load_state(const Json& state) {
  const std::string ctx = "ShuffledIndices::load_state";
  auto size = json_get<int64_t>(state, "size", ctx);
  auto seed = json_get<uint64_t>(state, "seed", ctx);
  auto shuffle = json_get<bool>(state, "shuffle", ctx);
  auto epoch = json_get<int64_t>(state, "epoch", ctx);
  auto position = json_get<int64_t>(state, "position", ctx);
  const int64_t megabatch = state.contains("megabatch") ? json_get<int64_t>(state, "megabatch", ctx) : 0;
  if (size != size_ || seed != seed_ || shuffle != shuffle_ || megabatch != grouping_.megabatch)
    fail(ctx, ": saved stream (size ", size, ", seed ", seed, ", shuffle ", shuffle, ", megabatch ", megabatch,
         ") is not this one (size ", size_, ", seed ", seed_, ", shuffle ", shuffle_, ", megabatch ",
         grouping_.megabatch, ")");
  if (epoch < 0 || position < 0 || position > size)
    fail(ctx, ": epoch ", epoch, " / position ", position, " out of range for size ", size);
  epoch_ = epoch;
  position_ = position;
  make_order();
}

ShardedIndexBatches::ShardedIndexBatches(int64_t dataset_size, int64_t global_batch, uint64_t seed, int rank,
                                         int world_size, bool shuffle)
    : indices_(dataset_size, seed, shuffle), global_batch_(global_batch), rank_(rank), world_size_(world_size) {
  if (global_batch <= 0) fail("ShardedIndexBatches: global batch must be > 0, got ", global_batch);
  if (global_batch < world_size)
    fail("ShardedIndexBatches: global batch ", global_batch, " is smaller than the world size ", world_size);
  shard_range(global_batch, rank, world_size);  // validates rank / world
}

ShardedIndexBatches::ShardedIndexBatches(std::vector<int64_t> lengths, int64_t group, int64_t global_batch,
                                         uint64_t seed, int rank, int world_size)
    : ShardedIndexBatches(int64_t(lengths.size()), global_batch, seed, rank, world_size) {
  if (group < 0) fail("ShardedIndexBatches: length-grouping factor must be >= 0, got ", group);
  const int64_t size = int64_t(lengths.size());
  indices_ = ShuffledIndices(size, seed, true, LengthGrouping{std::move(lengths), group * global_batch, global_batch});
}

std::vector<int64_t> ShardedIndexBatches::next() {
  auto global = indices_.next(global_batch_);
  auto [begin, end] = shard_range(global_batch_, rank_, world_size_);
  return std::vector<int64_t>(global.begin() + begin, global.begin() + end);
}

}  // namespace mmb
