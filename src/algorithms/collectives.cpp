#include "algorithms/collectives.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>
#include <vector>

#include "algorithms/partition.hpp"
#include "core/error.hpp"
#include "kernels/reduce.hpp"

namespace tpcomm::detail {
namespace {

std::size_t rank_index(int rank) { return static_cast<std::size_t>(rank); }

// One round: wait for my slot, let `fill` write it, publish, wait for all,
// let `drain` read, release. Every collective is a sequence of these.
template <class Fill, class Drain>
void round(ShmChannel& channel, const CallDescriptor& call, Fill fill, Drain drain) {
  const std::uint64_t r = channel.next_round();
  channel.acquire_slot(r, call);
  fill(channel.slot(channel.rank(), r));
  channel.publish(r, call);
  channel.wait_all_published(r, call);
  drain(r);
  channel.release(r);
}

// Elements of one piece when a slot is cut into n pieces (at least 1: the
// chunk size is at least a page and at most 64 ranks x 8-byte elements).
std::size_t piece_elements(const ShmChannel& channel, std::size_t element) {
  return std::max<std::size_t>(1, channel.chunk_bytes() / element / static_cast<std::size_t>(channel.world_size()));
}

std::size_t max_of(std::span<const std::size_t> values) {
  return values.empty() ? 0 : *std::max_element(values.begin(), values.end());
}

std::vector<std::size_t> prefix_offsets(std::span<const std::size_t> counts) {
  std::vector<std::size_t> offsets(counts.size(), 0);
  std::exclusive_scan(counts.begin(), counts.end(), offsets.begin(), std::size_t{0});
  return offsets;
}

// Pieces exchange shared by reduce_scatter(v), scatter and all_to_all(v):
// in round c, sender s puts elements [c*piece, (c+1)*piece) of its block for
// each destination d into piece d of its slot; destination d then reads piece d
// of the slots it needs. `send_block(d)` / `send_len(d)`: where the sender's
// block for d starts and how long it is; `receive(r, c_offset, length)`: the
// destination's handling of round r for block elements starting at c_offset.
// With `skip_own`, the sender leaves out its block for itself: the caller's
// `receive` then takes that block from the send buffer (or needs nothing, in
// place), one copy fewer and read from memory the caller has just written.
template <class SendBlock, class SendLength, class Receive>
void exchange_pieces(ShmChannel& channel, const CallDescriptor& call, std::size_t element, std::size_t longest,
                     bool i_send, bool skip_own, SendBlock send_block, SendLength send_len, Receive receive) {
  const int me = channel.rank();
  const int n = channel.world_size();
  const std::size_t piece = piece_elements(channel, element);
  const std::size_t rounds = chunk_count(longest, piece);
  for (std::size_t c = 0; c < rounds; ++c) {
    const std::size_t begin = c * piece;
    round(
        channel, call,
        [&](std::byte* slot) {
          if (!i_send) return;
          for (int d = 0; d < n; ++d) {
            const std::size_t length = send_len(d);
            if (begin >= length || (skip_own && d == me)) continue;
            const std::size_t take = std::min(piece, length - begin);
            std::memcpy(slot + rank_index(d) * piece * element, send_block(d) + begin * element, take * element);
          }
        },
        [&](std::uint64_t r) { receive(r, begin, piece); });
  }
  // The next call's slot, where the pieces went (after one-round calls only,
  // as all_reduce: one_shot_all_reduce).
  if (i_send && rounds == 1) {
    for (int d = 0; d < n; ++d) {
      const std::size_t length = std::min(piece, send_len(d));
      if (length == 0 || (skip_own && d == me)) continue;
      channel.claim_next_slot_range(rank_index(d) * piece * element, length * element);
    }
  }
}

}  // namespace

void barrier(ShmChannel& channel, const CallDescriptor& call) {
  const std::uint64_t r = channel.next_round();
  channel.publish(r, call);
  channel.wait_all_published(r, call);
  channel.release(r);
}

void reduce_scatterv(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call) {
  const int n = channel.world_size();
  const int me = channel.rank();
  const std::size_t element = dtype_size(args.dtype);
  const std::vector<std::size_t> offsets = prefix_offsets(args.counts);
  const FoldFunction fold = fold_function(args.dtype, args.op);
  const std::size_t mine = args.counts[rank_index(me)];
  std::array<const void*, kMaxWorldSize> sources{};
  // This rank's own block is folded from its input. In place (recv is that
  // block) the fold's destination is exactly one of its sources, which
  // every kernel allows.
  exchange_pieces(
      channel, call, element, max_of(args.counts), true, true,
      [&](int d) { return args.send + offsets[rank_index(d)] * element; },
      [&](int d) { return args.counts[rank_index(d)]; },
      [&](std::uint64_t r, std::size_t begin, std::size_t piece) {
        if (begin >= mine) return;
        const std::size_t take = std::min(piece, mine - begin);
        for (int s = 0; s < n; ++s) {
          sources[rank_index(s)] = s == me ? args.send + (offsets[rank_index(me)] + begin) * element
                                           : channel.slot(s, r) + rank_index(me) * piece * element;
        }
        fold(args.recv + begin * element, sources.data(), n, take);
      });
}

void reduce_scatter(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call) {
  const std::vector<std::size_t> counts(rank_index(channel.world_size()), args.count);
  CollectiveArgs equal = args;
  equal.counts = counts;
  reduce_scatterv(channel, equal, call);
}

void all_to_allv(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call) {
  const int n = channel.world_size();
  const int me = channel.rank();
  const std::size_t element = dtype_size(args.dtype);
  // Ranks know only their own rows of the count matrix: agree on the number of
  // rounds, and check that what each sender sends is what its receiver expects,
  // with one extra round in which every rank publishes its send counts.
  std::size_t longest = 0;
  round(
      channel, call,
      [&](std::byte* slot) {
        std::memcpy(slot, args.send_counts.data(), args.send_counts.size_bytes());
      },
      [&](std::uint64_t r) {
        for (int s = 0; s < n; ++s) {
          const auto* counts = reinterpret_cast<const std::size_t*>(channel.slot(s, r));
          longest = std::max(longest, *std::max_element(counts, counts + n));
          if (counts[rank_index(me)] != args.recv_counts[rank_index(s)]) {
            channel.fail_and_abort(
                ErrorCode::mismatch,
                "rank " + std::to_string(me) + ": all_to_allv: rank " + std::to_string(s) + " sends " +
                    std::to_string(counts[rank_index(me)]) + " elements to rank " + std::to_string(me) +
                    " but rank " + std::to_string(me) + " expects recv_counts[" + std::to_string(s) +
                    "] = " + std::to_string(args.recv_counts[rank_index(s)]));
          }
        }
      });
  // Out of place, this rank's block for itself goes straight from send to
  // recv. In place it takes the slot like the others: its displacements may
  // differ, and a direct copy could overwrite blocks not yet sent.
  const bool direct_own = args.send != args.recv;
  exchange_pieces(
      channel, call, element, longest, true, direct_own,
      [&](int d) { return args.send + args.send_displs[rank_index(d)] * element; },
      [&](int d) { return args.send_counts[rank_index(d)]; },
      [&](std::uint64_t r, std::size_t begin, std::size_t piece) {
        for (int s = 0; s < n; ++s) {
          const std::size_t length = args.recv_counts[rank_index(s)];
          if (begin >= length) continue;
          const std::size_t take = std::min(piece, length - begin);
          const std::byte* from = direct_own && s == me
                                      ? args.send + (args.send_displs[rank_index(me)] + begin) * element
                                      : channel.slot(s, r) + rank_index(me) * piece * element;
          std::memcpy(args.recv + (args.recv_displs[rank_index(s)] + begin) * element, from, take * element);
        }
      });
}

void all_to_all(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call) {
  const int n = channel.world_size();
  const int me = channel.rank();
  const std::size_t element = dtype_size(args.dtype);
  // In place is safe: round c copies piece c of every outgoing block into the
  // slot before anything lands in the same elements of the incoming blocks.
  // This rank's block for itself does not go through the slot: out of place
  // it is copied from send, in place it is already where it belongs.
  const bool in_place = args.send == args.recv;
  exchange_pieces(
      channel, call, element, args.count, true, true,
      [&](int d) { return args.send + rank_index(d) * args.count * element; },
      [&](int) { return args.count; },
      [&](std::uint64_t r, std::size_t begin, std::size_t piece) {
        const std::size_t take = std::min(piece, args.count - begin);
        for (int s = 0; s < n; ++s) {
          const std::size_t at = (rank_index(s) * args.count + begin) * element;
          if (s == me) {
            if (!in_place) std::memcpy(args.recv + at, args.send + at, take * element);
            continue;
          }
          std::memcpy(args.recv + at, channel.slot(s, r) + rank_index(me) * piece * element, take * element);
        }
      });
}

void scatter(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call) {
  const int me = channel.rank();
  const std::size_t element = dtype_size(args.dtype);
  const bool in_place_root = me == args.root && args.recv == args.send + rank_index(me) * args.count * element;
  // The root's own block goes straight from send to recv (or stays, in place).
  exchange_pieces(
      channel, call, element, args.count, me == args.root, true,
      [&](int d) { return args.send + rank_index(d) * args.count * element; },
      [&](int) { return args.count; },
      [&](std::uint64_t r, std::size_t begin, std::size_t piece) {
        if (in_place_root) return;
        const std::size_t take = std::min(piece, args.count - begin);
        const std::byte* from = me == args.root ? args.send + (rank_index(me) * args.count + begin) * element
                                                : channel.slot(args.root, r) + rank_index(me) * piece * element;
        std::memcpy(args.recv + begin * element, from, take * element);
      });
}

void all_gatherv(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call) {
  const int n = channel.world_size();
  const int me = channel.rank();
  const std::size_t element = dtype_size(args.dtype);
  const std::vector<std::size_t> offsets = prefix_offsets(args.counts);
  const std::size_t per_chunk = elements_per_chunk(channel.chunk_bytes(), element);
  const std::size_t rounds = chunk_count(max_of(args.counts), per_chunk);
  const std::size_t mine = args.counts[rank_index(me)];
  const bool in_place = args.send == args.recv + offsets[rank_index(me)] * element;
  for (std::size_t c = 0; c < rounds; ++c) {
    const std::size_t begin = c * per_chunk;
    round(
        channel, call,
        [&](std::byte* slot) {
          if (begin < mine) std::memcpy(slot, args.send + begin * element, std::min(per_chunk, mine - begin) * element);
        },
        [&](std::uint64_t r) {
          for (int s = 0; s < n; ++s) {
            const std::size_t length = args.counts[rank_index(s)];
            if (begin >= length || (s == me && in_place)) continue;
            std::memcpy(args.recv + (offsets[rank_index(s)] + begin) * element, channel.slot(s, r),
                        std::min(per_chunk, length - begin) * element);
          }
        });
  }
  if (rounds == 1) channel.claim_next_slot_range(0, mine * element);
}

void all_gather(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call) {
  const std::vector<std::size_t> counts(rank_index(channel.world_size()), args.count);
  CollectiveArgs equal = args;
  equal.counts = counts;
  all_gatherv(channel, equal, call);
}

void gather(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call) {
  const int n = channel.world_size();
  const int me = channel.rank();
  const std::size_t element = dtype_size(args.dtype);
  const std::size_t per_chunk = elements_per_chunk(channel.chunk_bytes(), element);
  const bool in_place_root = me == args.root && args.send == args.recv + rank_index(me) * args.count * element;
  for (std::size_t c = 0; c < chunk_count(args.count, per_chunk); ++c) {
    const Range range = chunk_range(args.count, per_chunk, c);
    round(
        channel, call,
        [&](std::byte* slot) {
          // Only the root reads the slots: its own data goes straight to recv.
          if (me != args.root) std::memcpy(slot, args.send + range.begin * element, range.count * element);
        },
        [&](std::uint64_t r) {
          if (me != args.root) return;
          for (int s = 0; s < n; ++s) {
            if (s == me && in_place_root) continue;
            std::memcpy(args.recv + (rank_index(s) * args.count + range.begin) * element,
                        s == me ? args.send + range.begin * element : channel.slot(s, r), range.count * element);
          }
        });
  }
  if (me != args.root && chunk_count(args.count, per_chunk) == 1) {
    channel.claim_next_slot_range(0, args.count * element);
  }
}

void broadcast(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call) {
  const int me = channel.rank();
  const std::size_t element = dtype_size(args.dtype);
  const std::size_t per_chunk = elements_per_chunk(channel.chunk_bytes(), element);
  for (std::size_t c = 0; c < chunk_count(args.count, per_chunk); ++c) {
    const Range range = chunk_range(args.count, per_chunk, c);
    const std::size_t offset = range.begin * element;
    round(
        channel, call,
        [&](std::byte* slot) {
          if (me != args.root) return;
          std::memcpy(slot, args.send + offset, range.count * element);
          if (args.recv != args.send) std::memcpy(args.recv + offset, args.send + offset, range.count * element);
        },
        [&](std::uint64_t r) {
          if (me != args.root) std::memcpy(args.recv + offset, channel.slot(args.root, r), range.count * element);
        });
  }
  if (me == args.root && chunk_count(args.count, per_chunk) == 1) {
    channel.claim_next_slot_range(0, args.count * element);
  }
}

void reduce(ShmChannel& channel, const CollectiveArgs& args, const CallDescriptor& call) {
  const int n = channel.world_size();
  const int me = channel.rank();
  const std::size_t element = dtype_size(args.dtype);
  const std::size_t per_chunk = elements_per_chunk(channel.chunk_bytes(), element);
  const FoldFunction fold = fold_function(args.dtype, args.op);
  std::array<const void*, kMaxWorldSize> sources{};
  for (std::size_t c = 0; c < chunk_count(args.count, per_chunk); ++c) {
    const Range range = chunk_range(args.count, per_chunk, c);
    const std::size_t offset = range.begin * element;
    round(
        channel, call,
        [&](std::byte* slot) {
          // Only the root reads the slots: it folds its own data from send
          // (in place, recv is send: the fold's destination is exactly a source).
          if (me != args.root) std::memcpy(slot, args.send + offset, range.count * element);
        },
        [&](std::uint64_t r) {
          if (me != args.root) return;
          for (int s = 0; s < n; ++s) sources[rank_index(s)] = s == me ? args.send + offset : channel.slot(s, r);
          fold(args.recv + offset, sources.data(), n, range.count);
        });
  }
  if (me != args.root && chunk_count(args.count, per_chunk) == 1) {
    channel.claim_next_slot_range(0, args.count * element);
  }
}

}  // namespace tpcomm::detail
