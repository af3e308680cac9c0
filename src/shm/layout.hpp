// Layout of a communicator's shared-memory segment.
//
//   SegmentHeader            magic, sizes, abort state, per-rank pid/arrival
//   ReadyLine[world]         one cache line per rank: its highest published round
//                            and the call descriptor of the round in each slot
//   ConsumedLine[world]      one cache line per rank: highest round it finished reading
//   slots[world][2]          staging: each rank owns two slots of chunk_bytes,
//                            used by round parity (round % 2)
//   PairSendLine[world^2]    point-to-point, per directed pair (s -> d): chunks sent,
//   PairAckLine[world^2]     chunks the receiver has copied out,
//   pair_slots[world^2][2]   and two slots of pair_bytes (unused on the diagonal)
//
// Invariants (the protocol, see shm/channel.hpp):
//   - counters are monotonic round numbers, never reset; round numbers run on
//     across calls and across collectives. Rounds start at 1.
//   - a rank writes its slot for round s only once every rank's consumed >= s-2
//     (everybody finished reading what it put there two rounds ago).
//   - ready.round is stored with release after the slot and the descriptor are
//     written; readers load it with acquire.
// Every line a rank writes on the hot path is its own cache line: no false sharing.
#pragma once

#include <time.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "shm/store_chooser.hpp"
#include "tpcomm/tpcomm.h"

namespace tpcomm::detail {

inline constexpr std::size_t kCacheLine = 64;
inline constexpr std::size_t kPage = 4096;
inline constexpr std::uint64_t kSegmentMagic = 0x32766d6d6f637074ull;  // "tpcommv2"
inline constexpr int kMaxWorldSize = TPCOMM_MAX_WORLD_SIZE;

static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "shared-memory atomics must be lock-free");
static_assert(std::atomic<std::int32_t>::is_always_lock_free, "shared-memory atomics must be lock-free");

struct alignas(kCacheLine) RankInfo {
  std::atomic<std::int32_t> pid;       // process id, for liveness checks
  std::atomic<std::uint32_t> arrived;  // set to 1 once this rank has mapped the segment
  // What this rank is blocked on, written only once a wait has outlasted its
  // spin phase (never on the hot path): the collective kind and 1 + the rank it
  // waits for; 0 when not blocked. Two ranks each blocked on the other in
  // different kinds of call (one in send/recv, one in a collective) can never
  // make progress: that is reported as a mismatch instead of a timeout.
  std::atomic<std::uint32_t> blocked_kind;
  std::atomic<std::int32_t> blocked_on;
  // Exactly what it waits for, so the awaited rank can tell a stale record
  // from a real deadlock: (BlockedNeed << 62) | counter value.
  std::atomic<std::uint64_t> blocked_need;
  // The CPUs this rank may run on, CPU k as bit k % 64 (affinity_bits()),
  // written before arrived: the default spin depends on how many CPUs the
  // ranks share between them (default_spin_count).
  std::atomic<std::uint64_t> cpus;
};

// What a blocked rank needs from the rank it is blocked on (see RankInfo).
enum class BlockedNeed : std::uint64_t {
  published = 0,  // that rank's ready.round >= value
  released = 1,   // that rank's consumed.round >= value
  chunk_sent = 2, // that rank's sent count on the pair (it -> blocked rank) >= value
  chunk_acked = 3 // that rank's ack count on the pair (blocked rank -> it) >= value
};

// The first error any rank hits is recorded here so that every other rank
// fails promptly with the same explanation instead of waiting for a timeout.
struct alignas(kCacheLine) AbortState {
  std::atomic<std::uint32_t> code;           // 0: healthy; else a tpcomm_status_t, set once by CAS
  std::atomic<std::int32_t> rank;            // the rank that recorded it
  std::atomic<std::uint32_t> message_ready;  // 1 once message is complete (release)
  // When it was recorded: CLOCK_MONOTONIC (one clock for every process of the
  // machine) in ns. Tells a failure of this job's start-up from an old one.
  std::atomic<std::int64_t> recorded_ns;
  char message[1000];
};

// One per rank. Ranks that have waited for rank r long enough to nap (see
// Backoff) sleep on r's `generation` as a futex and count themselves in its
// `sleepers`; when r makes progress visible (publishes a round, releases one,
// sends, acknowledges) it bumps its generation and wakes them if there are
// any. Per rank, so that a napping rank is woken by the rank it waits for,
// not by every rank's every round. The wake only shortens a nap: a sleeper
// also wakes when its nap runs out, so a missed wake-up costs at most one
// nap, never correctness.
struct alignas(kCacheLine) WakeLine {
  std::atomic<std::uint32_t> generation;
  std::atomic<std::uint32_t> sleepers;
};

inline std::int64_t monotonic_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<std::int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

// Kinds of all_reduce result with a store chooser each (ShmChannel::ResultKind).
inline constexpr std::size_t kResultStoreKinds = 4;

struct SegmentHeader {
  std::atomic<std::uint64_t> magic;  // written last by the creator (release)
  std::uint32_t world_size;
  // Set once every rank has arrived alive: the name is being removed, a
  // process finding it later must not join.
  std::atomic<std::uint32_t> completed;
  std::uint64_t chunk_bytes;
  std::uint64_t total_bytes;
  AbortState abort;
  WakeLine wake[kMaxWorldSize];
  RankInfo ranks[kMaxWorldSize];
  // Why a rank last rejected its arguments (see ShmChannel::publish_rejection),
  // written before the round that announces it.
  char rejection[kMaxWorldSize][256];
  // Rank 0's choices of stores, which every rank follows (StoreChooser): for
  // copies into slots, and for results by ShmChannel::ResultKind. Written
  // only when a choice changes, so the lines stay shared in every cache.
  alignas(kCacheLine) StoreChooser::Board copy_stores;
  StoreChooser::Board result_stores[kResultStoreKinds];
};

struct alignas(kCacheLine) ReadyLine {
  std::atomic<std::uint64_t> round;
  // Descriptor of the call that published round r, stored at [r % 2]; three words
  // (see CallDescriptor). Same line as the counter: a reader gets both in one transfer.
  std::atomic<std::uint64_t> call[2][3];
};

struct alignas(kCacheLine) ConsumedLine {
  std::atomic<std::uint64_t> round;
};

// Written by the sender of a directed pair: chunks published so far, and per
// slot parity the total byte length of the message the chunk belongs to (so
// the receiver can check it expects the same length) and the dtype.
struct alignas(kCacheLine) PairSendLine {
  std::atomic<std::uint64_t> sent;
  std::atomic<std::uint64_t> message_bytes[2];
  std::atomic<std::uint64_t> message_dtype[2];
};

// Written by the receiver of a directed pair: chunks it has finished copying.
struct alignas(kCacheLine) PairAckLine {
  std::atomic<std::uint64_t> acked;
};

static_assert(sizeof(ReadyLine) == kCacheLine);
static_assert(sizeof(PairSendLine) == kCacheLine);
static_assert(sizeof(ConsumedLine) == kCacheLine);

struct SegmentLayout {
  std::size_t ready_offset = 0;
  std::size_t consumed_offset = 0;
  std::size_t slots_offset = 0;
  std::size_t slot_stride = 0;  // bytes between consecutive slots (chunk rounded up to a page)
  std::size_t pair_send_offset = 0;
  std::size_t pair_ack_offset = 0;
  std::size_t pair_slots_offset = 0;
  std::size_t pair_bytes = 0;  // one point-to-point slot (two per directed pair)
  std::size_t total_bytes = 0;

  static constexpr std::size_t round_up(std::size_t value, std::size_t alignment) {
    return (value + alignment - 1) / alignment * alignment;
  }

  static constexpr SegmentLayout compute(int world_size, std::size_t chunk_bytes) {
    SegmentLayout layout;
    const auto n = static_cast<std::size_t>(world_size);
    layout.ready_offset = round_up(sizeof(SegmentHeader), kCacheLine);
    layout.consumed_offset = layout.ready_offset + n * sizeof(ReadyLine);
    layout.slots_offset = round_up(layout.consumed_offset + n * sizeof(ConsumedLine), kPage);
    layout.slot_stride = round_up(chunk_bytes, kPage);
    layout.pair_send_offset = layout.slots_offset + 2 * n * layout.slot_stride;
    layout.pair_ack_offset = layout.pair_send_offset + n * n * sizeof(PairSendLine);
    layout.pair_slots_offset = round_up(layout.pair_ack_offset + n * n * sizeof(PairAckLine), kPage);
    // Point-to-point slots share a budget of 32 MiB over all directed pairs,
    // at least a page and at most one chunk each.
    const std::size_t pairs = n > 1 ? n * (n - 1) : 1;
    const std::size_t budget = (std::size_t{32} << 20) / (2 * pairs);
    layout.pair_bytes = budget < kPage ? kPage : (budget / kPage * kPage);
    if (layout.pair_bytes > layout.slot_stride) layout.pair_bytes = layout.slot_stride;
    layout.total_bytes = layout.pair_slots_offset + (n > 1 ? 2 * n * n * layout.pair_bytes : 0);
    return layout;
  }
};

}  // namespace tpcomm::detail
