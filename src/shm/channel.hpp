// ShmChannel: the hot-path view of a communicator's segment (no ownership).
//
// A collective is a sequence of rounds. In round s every rank may write its
// own slot (parity s % 2), publishes ready = s, reads whatever it needs from
// the slots of round s of other ranks, then publishes consumed = s. Before a
// rank writes its slot for round s it waits until every rank's consumed >= s-2.
// Round numbers run on across calls, so every algorithm advances the counters
// in the same way and algorithms can be mixed freely from call to call.
//
// Every wait is bounded: it spins briefly, then yields, then sleeps, checking
// the deadline, the shared abort state and the liveness of the awaited rank.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "kernels/reduce.hpp"
#include "shm/layout.hpp"
#include "shm/store_chooser.hpp"
#include "tpcomm/tpcomm.hpp"

namespace tpcomm::detail {

enum class CollectiveKind : std::uint8_t {
  barrier = 1,
  all_reduce = 2,
  reduce_scatter = 3,
  reduce_scatterv = 4,
  all_gather = 5,
  all_gatherv = 6,
  broadcast = 7,
  reduce = 8,
  gather = 9,
  scatter = 10,
  all_to_all = 11,
  all_to_allv = 12,
  send_recv = 13,
};

std::string_view collective_name(CollectiveKind kind);

// What a rank is doing in a round; ranks compare descriptors to detect
// mismatched calls. Packed into two 64-bit words.
struct CallDescriptor {
  CollectiveKind kind = CollectiveKind::barrier;
  std::uint8_t dtype = 0;
  std::uint8_t op = 0;
  std::uint8_t algorithm = 0;
  std::int32_t root = -1;
  std::uint64_t count = 0;
  // Zero-copy calls: which shared buffer and offset (ranks must agree); else 0.
  std::uint64_t location = 0;

  std::uint64_t word0() const;
  std::uint64_t word1() const { return count; }
  std::uint64_t word2() const { return location; }
  static CallDescriptor unpack(std::uint64_t w0, std::uint64_t w1, std::uint64_t w2);
  std::string describe() const;  // e.g. "all_reduce(count=1024, dtype=f32, op=sum, algorithm=one_shot)"
  bool operator==(const CallDescriptor&) const = default;
};

// Whether process `pid` exists and is not a zombie (0: unknown, counts as alive).
bool process_alive(std::int32_t pid);

// Records `code` (from `rank`, with `message`) in `abort` unless a failure is
// recorded there already; returns whether this one was recorded. The one way
// every path (collectives, rendezvous) writes the shared failure record.
bool record_failure(AbortState& abort, ErrorCode code, int rank, std::string_view message) noexcept;

struct WaitPolicy {
  std::chrono::duration<double> timeout{300.0};
  int spin_count = 4096;  // pause iterations before yielding
};

class WorkerPool;

// How data is moved: into staging slots (see kernels/copy.hpp), and by how
// many of the rank's threads (see core/worker_pool.hpp).
struct CopyPolicy {
  std::size_t streaming_min_bytes = SIZE_MAX;  // non-temporal stores from this many bytes up
  bool measured_stores = false;                // or: chosen by measured cost (StoreChooser)
  std::size_t claim_max_bytes = 0;             // claim_next_slot() up to this many bytes
  std::size_t own_from_input_max_bytes = 0;    // folds read the rank's own input, not its slot, in calls this small
  bool measured_results = false;               // results' stores chosen by measured cost (ShmChannel::ResultStores)
  std::size_t result_streaming_min_bytes = SIZE_MAX;  // or: streamed from this call size up
  WorkerPool* workers = nullptr;               // helper threads, if the rank has any
  std::size_t split_min_bytes = SIZE_MAX;      // steps of this size and up are split among them
};

// One waiter's back-off schedule: spin with a pause, then yield (so an
// oversubscribed machine makes progress), then nap with growing sleeps (so an
// idle wait costs no CPU). pause() returns true when the periodic checks
// (deadline, liveness) are due: every ~50 ms once spinning is over.
class Backoff {
 public:
  // With `wake`, naps are futex waits on it that progress can cut short.
  explicit Backoff(const WaitPolicy& policy, WakeLine* wake = nullptr);
  void wake_on(WakeLine* wake) { wake_ = wake; }
  bool pause();
  bool expired() const;
  void restart();  // progress was made: back to spinning, deadline renewed

 private:
  using clock = std::chrono::steady_clock;
  const WaitPolicy& policy_;
  WakeLine* wake_;
  int spins_ = 0;
  bool timed_ = false;
  clock::time_point start_{};
  clock::time_point deadline_{};
  clock::time_point next_check_{};
  std::chrono::microseconds nap_{20};
};

class ShmChannel {
 public:
  ShmChannel() = default;
  ShmChannel(std::byte* base, const SegmentLayout& layout, int rank, int world_size);

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  std::size_t chunk_bytes() const { return chunk_bytes_; }
  SegmentHeader& header() const { return *header_; }

  CopyPolicy& copy_policy() { return copy_policy_; }
  // Copies `bytes` into a slot (or any shared memory a peer reads next),
  // except the bytes [skip_begin, skip_end) that no peer reads. The kind of
  // stores is chosen for `bytes` all the same, so that every rank counts the
  // same copies whatever it skips.
  void copy_in(std::byte* slot, const std::byte* src, std::size_t bytes, std::size_t skip_begin = 0,
               std::size_t skip_end = 0);
  // How a call writes its result into the caller's buffer: with ordinary or
  // non-temporal stores. Which is faster depends on where that buffer's lines
  // are and on the machine's state. Out of place, the buffer is usually not in
  // cache (a fresh output), and from a few MiB up streaming stores skip reading
  // every line first. In place, the lines were just read, and ordinary stores
  // win in the machine's fast state, streaming ones in its slow state (the
  // lines' write-back then competes with the peer's reads). So each kind of
  // call (in place, out of place, zero-copy of each) has a StoreChooser, keyed
  // by the call's size and fed with the call's time (record_result_stores).
  // Results below min_streamed_result_bytes(kind) use ordinary stores: 2 MiB for the
  // caller's private buffers (at 1 MiB streaming gained at most 5 % in the
  // slow state and cost up to 1.8x in the fast one), 1 MiB for zero-copy ones
  // (zero-copy in place, slow state, 1 MiB: 280 -> 115 us). A size makes it
  // fixed: streaming from CopyPolicy::result_streaming_min_bytes up, every kind.
  enum class ResultKind : std::uint8_t { out_of_place, in_place, zero_copy_out_of_place, zero_copy_in_place };
  static_assert(static_cast<std::size_t>(ResultKind::zero_copy_in_place) + 1 == kResultStoreKinds);
  static constexpr std::size_t min_streamed_result_bytes(ResultKind kind) {
    return kind == ResultKind::out_of_place || kind == ResultKind::in_place ? std::size_t{2} << 20
                                                                            : std::size_t{1} << 20;
  }
  struct ResultStores {
    StoreChooser::Choice choice;  // ordinary unless chosen otherwise
    std::size_t bytes = 0;        // the call's result size
    ResultKind kind = ResultKind::out_of_place;
    std::uint64_t start = 0;      // when choice.timed: when the call began
    std::uint64_t excluded = 0;   // ticks of the call's first wait for its peers, left out of its cost
    bool waited = false;          // that first wait is behind
  };
  ResultStores choose_result_stores(std::size_t bytes, ResultKind kind);
  // After the call: its cost, if it was timed: the whole call but its first
  // wait for the peers (their arrival, not this call's stores). A streamed
  // result keeps the memory busy after the fold that wrote it, through the
  // rest of the call and into the next call's first copy, so timing only the
  // writing of the result made streaming look cheap where it was not (2 MiB
  // out of place, fast state: chosen at 203 us against 135 us for ordinary
  // stores).
  void record_result_stores(const ResultStores& result);
  // wait_all_published, timed out of `result` if it is the call's first wait.
  void wait_all_published(std::uint64_t round, const CallDescriptor& call, ResultStores& result);

  // Copies `bytes` out of shared memory into the caller's buffer.
  void copy_out(std::byte* dst, const std::byte* src, std::size_t bytes, ResultStores* result = nullptr) const;
  // kernel(dst, sources, n, count) for elements of `element` bytes. These
  // three split large steps among the rank's threads (CopyPolicy). With a
  // result, dst is the caller's buffer, written as result->choice says.
  void fold(FoldFunction kernel, std::byte* dst, const void* const* sources, int n, std::size_t count,
            std::size_t element, ResultStores* result = nullptr) const;

  WaitPolicy& policy() { return policy_; }
  const WaitPolicy& policy() const { return policy_; }

  // Rounds are numbered from 1; next_round() hands out the next number.
  std::uint64_t next_round() { return ++last_round_; }

  std::byte* slot(int owner, std::uint64_t round) const {
    return slots_ + (static_cast<std::size_t>(owner) * 2 + (round & 1)) * slot_stride_;
  }

  // Waits until this rank may write its slot for `round`.
  void acquire_slot(std::uint64_t round, const CallDescriptor& call);
  // Publishes this rank's round (slot contents and descriptor become visible).
  void publish(std::uint64_t round, const CallDescriptor& call);
  // Waits until every rank has published `round` with the same descriptor.
  void wait_all_published(std::uint64_t round, const CallDescriptor& call);
  // This rank has finished reading the slots of `round`.
  void release(std::uint64_t round);
  // At the end of a call whose one copy_in() was `bytes`: takes the lines of
  // this rank's slot for the next round back from the ranks that read them
  // (one store per line), so the transfers overlap the caller's work between
  // calls instead of stalling the next call's copy. Does nothing above
  // CopyPolicy::claim_max_bytes, if a rank may still read that slot, or (with
  // measured stores) where claiming has measured dearer than not
  // (StoreChooser::claim).
  void claim_next_slot(std::size_t bytes);
  // The same for the bytes [offset, offset + bytes) of the slot, whenever
  // allowed: for collectives that fill slots with ordinary copies of their own.
  void claim_next_slot_range(std::size_t offset, std::size_t bytes);
  // Wakes the ranks napping in a wait for this rank, if any (see WakeLine):
  // after every store that another rank may be waiting for.
  void wake_sleepers() const { wake_sleepers_of(rank_); }
  void wake_sleepers_of(int rank) const;
  // Where ranks waiting for `rank` nap.
  WakeLine& wake_line(int rank) const { return header_->wake[rank]; }
  // This rank rejected the arguments of `call` (an error only it could see,
  // such as a null buffer on the root): it takes part in one round with a
  // rejected descriptor and no data, so every rank fails the call with
  // invalid_argument, and the counters stay in step for the next call.
  void publish_rejection(const CallDescriptor& call, const char* reason);
  static constexpr std::uint64_t kRejectedBit = std::uint64_t{1} << 62;
  // Waits until every rank has released `round` (a trailing "done reading"
  // acknowledgement for zero-copy calls, whose inputs are the caller's memory).
  void wait_all_released(std::uint64_t round, const CallDescriptor& call) { acquire_slot(round + 2, call); }

  // ---- point-to-point, per directed pair ------------------------------------
  std::size_t pair_bytes() const { return pair_bytes_; }
  PairSendLine& pair_send(int from, int to) const { return pair_send_[pair_index(from, to)]; }
  PairAckLine& pair_ack(int from, int to) const { return pair_ack_[pair_index(from, to)]; }
  std::byte* pair_slot(int from, int to, std::uint64_t chunk) const {
    return pair_slots_ + (pair_index(from, to) * 2 + (chunk & 1)) * pair_bytes_;
  }
  // Chunks this rank has sent to / received from each peer (its own counts).
  std::uint64_t& sent_to(int peer) { return sent_to_[static_cast<std::size_t>(peer)]; }
  std::uint64_t& received_from(int peer) { return received_from_[static_cast<std::size_t>(peer)]; }

  // Whether `peer`'s process still exists (and is not a zombie).
  bool peer_alive(int peer) const;
  // Slow-path bookkeeping of what this rank is blocked on (see RankInfo), and
  // the check that `peer` is not blocked on this rank in a different kind of
  // call, which would be a deadlock: fails with a mismatch if it is.
  void set_blocked(CollectiveKind kind, int peer, BlockedNeed need, std::uint64_t value);
  void clear_blocked();
  void fail_if_cross_blocked(int peer, const CallDescriptor& call);
  // Fails (and records the failure for every rank) because `peer` died, or
  // because the wait that `backoff` tracks has run out of time. The caller
  // samples liveness *before* its last look for progress: a peer that
  // published its last round and then exited normally is not a failure.
  [[noreturn]] void fail_peer_dead(int peer, const CallDescriptor& call, const std::string& what);
  void fail_if_expired(int peer, const Backoff& backoff, const CallDescriptor& call, const std::string& what);
  [[noreturn]] void fail_and_abort(ErrorCode code, const std::string& message);

  // Records the first failure in the shared abort state so every rank fails
  // with it (first writer wins). Never throws.
  void record_abort(ErrorCode code, const std::string& message) noexcept;
  // Throws if any rank has recorded a failure.
  void throw_if_aborted(const CallDescriptor& call) const;

 private:
  template <class Reached>
  void wait_for(int peer, Reached reached, const CallDescriptor& call, const char* what, BlockedNeed need,
                std::uint64_t round);
  std::size_t pair_index(int from, int to) const {
    return static_cast<std::size_t>(from) * static_cast<std::size_t>(world_size_) + static_cast<std::size_t>(to);
  }

  SegmentHeader* header_ = nullptr;
  ReadyLine* ready_ = nullptr;
  ConsumedLine* consumed_ = nullptr;
  std::byte* slots_ = nullptr;
  std::size_t slot_stride_ = 0;
  std::size_t chunk_bytes_ = 0;
  int rank_ = 0;
  int world_size_ = 0;
  std::uint64_t last_round_ = 0;
  std::uint64_t consumed_floor_ = 0;  // a known lower bound of every rank's consumed
  WaitPolicy policy_;
  CopyPolicy copy_policy_;
  // With measured stores: the choice for the last copy_in and its cost so far
  // (the copy, then the reading from wait_all_published's return to release).
  struct StoreSample {
    StoreChooser::Choice choice;
    std::size_t bytes = 0;
    std::uint64_t copy_ticks = 0;
    std::uint64_t read_start = 0;  // 0: the round's data is not being read yet
    bool pending = false;
  };
  StoreChooser store_chooser_;
  StoreSample store_sample_;
  std::array<StoreChooser, kResultStoreKinds> result_choosers_;  // by ResultKind (SegmentHeader::result_stores)
  // What claim_next_slot decided for the next round's copy.
  struct PendingClaim {
    std::uint64_t round = 0;  // 0: none
    std::size_t bytes = 0;
    StoreChooser::Choice choice;
    std::uint64_t ticks = 0;  // the claim's time, part of the claimed copy's cost
  };
  PendingClaim pending_claim_;
  bool may_claim_next_slot() const;
  std::uint64_t claim_lines(std::uint64_t round, std::size_t offset, std::size_t bytes);
  PairSendLine* pair_send_ = nullptr;
  PairAckLine* pair_ack_ = nullptr;
  std::byte* pair_slots_ = nullptr;
  std::size_t pair_bytes_ = 0;
  std::uint64_t sent_to_[kMaxWorldSize] = {};
  std::uint64_t received_from_[kMaxWorldSize] = {};
};

}  // namespace tpcomm::detail
