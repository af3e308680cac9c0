#include "shm/channel.hpp"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include "core/error.hpp"
#include "core/futex.hpp"
#include "core/ticks.hpp"
#include "core/worker_pool.hpp"
#include "kernels/copy.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TPCOMM_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define TPCOMM_CPU_RELAX() asm volatile("yield" ::: "memory")
#else
#define TPCOMM_CPU_RELAX() ((void)0)
#endif

namespace tpcomm::detail {

std::string_view collective_name(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::barrier: return "barrier";
    case CollectiveKind::all_reduce: return "all_reduce";
    case CollectiveKind::reduce_scatter: return "reduce_scatter";
    case CollectiveKind::reduce_scatterv: return "reduce_scatterv";
    case CollectiveKind::all_gather: return "all_gather";
    case CollectiveKind::all_gatherv: return "all_gatherv";
    case CollectiveKind::broadcast: return "broadcast";
    case CollectiveKind::reduce: return "reduce";
    case CollectiveKind::gather: return "gather";
    case CollectiveKind::scatter: return "scatter";
    case CollectiveKind::all_to_all: return "all_to_all";
    case CollectiveKind::all_to_allv: return "all_to_allv";
    case CollectiveKind::send_recv: return "send/recv";
  }
  return "unknown collective";
}

std::uint64_t CallDescriptor::word0() const {
  // Bit 63 marks a valid descriptor so an all-zero (never written) slot never matches.
  return (std::uint64_t{1} << 63) | (static_cast<std::uint64_t>(kind) << 48) |
         (static_cast<std::uint64_t>(dtype) << 40) | (static_cast<std::uint64_t>(op) << 32) |
         (static_cast<std::uint64_t>(algorithm) << 24) | (static_cast<std::uint64_t>(root + 1) & 0xffffffu);
}

CallDescriptor CallDescriptor::unpack(std::uint64_t w0, std::uint64_t w1, std::uint64_t w2) {
  CallDescriptor d;
  d.kind = static_cast<CollectiveKind>((w0 >> 48) & 0xff);
  d.dtype = static_cast<std::uint8_t>((w0 >> 40) & 0xff);
  d.op = static_cast<std::uint8_t>((w0 >> 32) & 0xff);
  d.algorithm = static_cast<std::uint8_t>((w0 >> 24) & 0xff);
  d.root = static_cast<std::int32_t>(w0 & 0xffffffu) - 1;
  d.count = w1;
  d.location = w2;
  return d;
}

namespace {
const char* algorithm_label(std::uint8_t id) {
  switch (id) {
    case 1: return "one_shot";
    case 2: return "two_shot";
    case 3: return "zero_copy_one_shot";
    case 4: return "zero_copy_two_shot";
    default: return "-";
  }
}
}  // namespace

std::string CallDescriptor::describe() const {
  std::string text(collective_name(kind));
  if (kind == CollectiveKind::barrier) return text + "()";
  const bool vector_counts = kind == CollectiveKind::all_gatherv || kind == CollectiveKind::reduce_scatterv ||
                             kind == CollectiveKind::all_to_allv;
  text += vector_counts ? "(counts hash=" + std::to_string(count) : "(count=" + std::to_string(count);
  if (dtype < 8) text += ", dtype=" + std::string(dtype_name(static_cast<DataType>(dtype)));
  if (op < 5) text += ", op=" + std::string(redop_name(static_cast<ReduceOp>(op)));
  if (root >= 0) text += ", root=" + std::to_string(root);
  if (algorithm != 0) text += std::string(", algorithm=") + algorithm_label(algorithm);
  if (location != 0) {
    text += ", shared buffer " + std::to_string(location >> 48) + " offset " +
            std::to_string(location & ((std::uint64_t{1} << 48) - 1));
  }
  return text + ")";
}

ShmChannel::ShmChannel(std::byte* base, const SegmentLayout& layout, int rank, int world_size)
    : header_(reinterpret_cast<SegmentHeader*>(base)),
      ready_(reinterpret_cast<ReadyLine*>(base + layout.ready_offset)),
      consumed_(reinterpret_cast<ConsumedLine*>(base + layout.consumed_offset)),
      slots_(base + layout.slots_offset),
      slot_stride_(layout.slot_stride),
      chunk_bytes_(static_cast<std::size_t>(header_->chunk_bytes)),
      rank_(rank),
      world_size_(world_size),
      pair_send_(reinterpret_cast<PairSendLine*>(base + layout.pair_send_offset)),
      pair_ack_(reinterpret_cast<PairAckLine*>(base + layout.pair_ack_offset)),
      pair_slots_(base + layout.pair_slots_offset),
      pair_bytes_(layout.pair_bytes) {
  // Every rank follows rank 0's choices of stores (see StoreChooser).
  store_chooser_.attach(&header_->copy_stores, rank_ == 0);
  for (std::size_t kind = 0; kind < result_choosers_.size(); ++kind) {
    result_choosers_[kind].attach(&header_->result_stores[kind], rank_ == 0);
  }
}

Backoff::Backoff(const WaitPolicy& policy, WakeLine* wake) : policy_(policy), wake_(wake) {}

void Backoff::restart() {
  spins_ = 0;
  timed_ = false;
  nap_ = std::chrono::microseconds(20);
}

bool Backoff::pause() {
  if (spins_ < policy_.spin_count) {
    ++spins_;
    TPCOMM_CPU_RELAX();
    return false;
  }
  const auto now = clock::now();
  if (!timed_) {
    timed_ = true;
    start_ = now;
    // Clamp, so that a huge timeout means "practically never", not an
    // overflowed deadline in the past.
    const double seconds = std::min(policy_.timeout.count(), 1e9);
    deadline_ = now + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds));
    next_check_ = now;
  }
  if (now - start_ < std::chrono::milliseconds(5)) {
    sched_yield();
  } else {
    if (wake_ != nullptr) {
      const std::uint32_t seen = wake_->generation.load(std::memory_order_acquire);
      wake_->sleepers.fetch_add(1, std::memory_order_seq_cst);
      futex_wait(wake_->generation, seen, FutexScope::shared, &nap_);
      wake_->sleepers.fetch_sub(1, std::memory_order_relaxed);
    } else {
      std::this_thread::sleep_for(nap_);
    }
    nap_ = std::min(nap_ * 2, std::chrono::microseconds(1000));
  }
  if (now >= next_check_) {
    next_check_ = now + std::chrono::milliseconds(50);
    return true;
  }
  return false;
}

bool Backoff::expired() const { return timed_ && clock::now() >= deadline_; }

void ShmChannel::fail_peer_dead(int peer, const CallDescriptor& call, const std::string& what) {
  fail_and_abort(ErrorCode::peer_dead, "rank " + std::to_string(rank_) + ": " + call.describe() + ": rank " +
                                           std::to_string(peer) + " (pid " +
                                           std::to_string(header_->ranks[peer].pid.load()) +
                                           ") died while this rank waited for it to " + what);
}

void ShmChannel::set_blocked(CollectiveKind kind, int peer, BlockedNeed need, std::uint64_t value) {
  RankInfo& me = header_->ranks[rank_];
  me.blocked_on.store(peer + 1, std::memory_order_relaxed);
  me.blocked_need.store((static_cast<std::uint64_t>(need) << 62) | value, std::memory_order_relaxed);
  me.blocked_kind.store(static_cast<std::uint32_t>(kind), std::memory_order_release);
}

void ShmChannel::clear_blocked() { header_->ranks[rank_].blocked_kind.store(0, std::memory_order_release); }

void ShmChannel::fail_if_cross_blocked(int peer, const CallDescriptor& call) {
  const RankInfo& other = header_->ranks[peer];
  const auto kind = other.blocked_kind.load(std::memory_order_acquire);
  if (kind == 0 || other.blocked_on.load(std::memory_order_relaxed) != rank_ + 1) return;
  const bool mine_is_p2p = call.kind == CollectiveKind::send_recv;
  const bool theirs_is_p2p = kind == static_cast<std::uint32_t>(CollectiveKind::send_recv);
  if (mine_is_p2p == theirs_is_p2p) return;  // same kind of call: ordinary waiting
  // The peer waits for one of this rank's counters. If this rank has already
  // moved it far enough, the record is stale (the peer will notice and move
  // on). If not, this rank cannot move it while it is blocked in the other
  // kind of call, and the peer cannot help this rank: a certain deadlock.
  const std::uint64_t word = other.blocked_need.load(std::memory_order_relaxed);
  const auto need = static_cast<BlockedNeed>(word >> 62);
  const std::uint64_t value = word & ((std::uint64_t{1} << 62) - 1);
  std::uint64_t have = 0;
  switch (need) {
    case BlockedNeed::published: have = ready_[rank_].round.load(std::memory_order_acquire); break;
    case BlockedNeed::released: have = consumed_[rank_].round.load(std::memory_order_acquire); break;
    case BlockedNeed::chunk_sent: have = pair_send(rank_, peer).sent.load(std::memory_order_acquire); break;
    case BlockedNeed::chunk_acked: have = pair_ack(peer, rank_).acked.load(std::memory_order_acquire); break;
  }
  if (have >= value) return;
  fail_and_abort(ErrorCode::mismatch, "mismatched calls: rank " + std::to_string(rank_) + " is in " +
                                          call.describe() + " waiting for rank " + std::to_string(peer) +
                                          ", while rank " + std::to_string(peer) + " is in " +
                                          std::string(collective_name(static_cast<CollectiveKind>(kind))) +
                                          " waiting for rank " + std::to_string(rank_));
}

void ShmChannel::fail_if_expired(int peer, const Backoff& backoff, const CallDescriptor& call,
                                 const std::string& what) {
  if (backoff.expired()) {
    fail_and_abort(ErrorCode::timeout, "rank " + std::to_string(rank_) + ": " + call.describe() + ": timed out after " +
                                           std::to_string(policy_.timeout.count()) + " s waiting for rank " +
                                           std::to_string(peer) + " to " + what + " (rank " + std::to_string(peer) +
                                           " is late or stopped calling)");
  }
}

bool record_failure(AbortState& abort, ErrorCode code, int rank, std::string_view message) noexcept {
  std::uint32_t expected = 0;
  if (!abort.code.compare_exchange_strong(expected, static_cast<std::uint32_t>(code), std::memory_order_acq_rel)) {
    return false;  // someone else's failure came first; theirs is the one reported
  }
  abort.rank.store(rank, std::memory_order_relaxed);
  abort.recorded_ns.store(monotonic_ns(), std::memory_order_relaxed);
  const std::size_t n = std::min(message.size(), sizeof(abort.message) - 1);
  std::memcpy(abort.message, message.data(), n);
  abort.message[n] = '\0';
  abort.message_ready.store(1, std::memory_order_release);
  return true;
}

void ShmChannel::record_abort(ErrorCode code, const std::string& message) noexcept {
  if (record_failure(header_->abort, code, rank_, message)) {
    for (int rank = 0; rank < world_size_; ++rank) wake_sleepers_of(rank);
  }
}

void ShmChannel::throw_if_aborted(const CallDescriptor& call) const {
  const AbortState& abort = header_->abort;
  const std::uint32_t code = abort.code.load(std::memory_order_acquire);
  if (code == 0) return;
  // The recording rank writes the message right after the code; wait briefly for it.
  for (int i = 0; i < 100000 && abort.message_ready.load(std::memory_order_acquire) == 0; ++i) TPCOMM_CPU_RELAX();
  const int who = abort.rank.load(std::memory_order_relaxed);
  std::string text = abort.message_ready.load(std::memory_order_acquire) != 0 ? std::string(abort.message)
                                                                             : std::string("(no message)");
  throw Error(static_cast<ErrorCode>(code), "rank " + std::to_string(rank_) + ": " + call.describe() +
                                                " failed because rank " + std::to_string(who) + " reported: " + text);
}

void ShmChannel::fail_and_abort(ErrorCode code, const std::string& message) {
  record_abort(code, message);
  throw Error(code, message);
}

bool process_alive(std::int32_t pid) {
  if (pid <= 0) return true;  // not known yet
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  // A killed child of a launcher that has not reaped it yet is a zombie: dead too.
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  if (FILE* file = std::fopen(path, "r")) {
    char buffer[256] = {};
    const std::size_t got = std::fread(buffer, 1, sizeof(buffer) - 1, file);
    std::fclose(file);
    const char* close_paren = std::strrchr(buffer, ')');
    if (got > 0 && close_paren != nullptr && close_paren[1] == ' ') {
      const char state = close_paren[2];
      if (state == 'Z' || state == 'X') return false;
    }
  }
  return true;
}

bool ShmChannel::peer_alive(int peer) const {
  return process_alive(header_->ranks[peer].pid.load(std::memory_order_relaxed));
}

template <class Reached>
void ShmChannel::wait_for(int peer, Reached reached, const CallDescriptor& call, const char* what,
                          BlockedNeed need, std::uint64_t round) {
  if (reached()) return;
  Backoff backoff(policy_, &header_->wake[peer]);
  bool blocked = false;  // published in RankInfo once the checks first fall due
  for (std::uint32_t i = 1;; ++i) {
    const bool checks_due = backoff.pause();
    if (reached()) break;
    // The abort flag is one shared, rarely written line: cheap to poll.
    if ((i & 63) == 0 || checks_due) throw_if_aborted(call);
    if (checks_due) {
      if (!blocked) {
        set_blocked(call.kind, peer, need, round);
        blocked = true;
      }
      // Liveness first, then one more look: a peer may publish and exit
      // normally in between, which is success, not a death.
      const bool alive = peer_alive(peer);
      if (reached()) break;
      const std::string doing = std::string(what) + " round " + std::to_string(round);
      if (!alive) fail_peer_dead(peer, call, doing);
      fail_if_cross_blocked(peer, call);
      fail_if_expired(peer, backoff, call, doing);
    }
  }
  if (blocked) clear_blocked();
}

void ShmChannel::acquire_slot(std::uint64_t round, const CallDescriptor& call) {
  if (round <= 2 || consumed_floor_ >= round - 2) return;
  std::uint64_t floor = UINT64_MAX;
  for (int peer = 0; peer < world_size_; ++peer) {
    std::atomic<std::uint64_t>& counter = consumed_[peer].round;
    wait_for(
        peer, [&] { return counter.load(std::memory_order_acquire) >= round - 2; }, call, "finish reading",
        BlockedNeed::released, round - 2);
    floor = std::min(floor, counter.load(std::memory_order_relaxed));
  }
  consumed_floor_ = floor;
}

void ShmChannel::publish(std::uint64_t round, const CallDescriptor& call) {
  ReadyLine& line = ready_[rank_];
  line.call[round & 1][0].store(call.word0(), std::memory_order_relaxed);
  line.call[round & 1][1].store(call.word1(), std::memory_order_relaxed);
  line.call[round & 1][2].store(call.word2(), std::memory_order_relaxed);
  line.round.store(round, std::memory_order_release);
  wake_sleepers();
}

void ShmChannel::wait_all_published(std::uint64_t round, const CallDescriptor& call) {
  const std::uint64_t mine0 = call.word0();
  const std::uint64_t mine1 = call.word1();
  const std::uint64_t mine2 = call.word2();
  for (int peer = 0; peer < world_size_; ++peer) {
    if (peer == rank_) continue;
    ReadyLine& line = ready_[peer];
    wait_for(
        peer, [&] { return line.round.load(std::memory_order_acquire) >= round; }, call, "publish",
        BlockedNeed::published, round);
    const std::uint64_t theirs0 = line.call[round & 1][0].load(std::memory_order_relaxed);
    const std::uint64_t theirs1 = line.call[round & 1][1].load(std::memory_order_relaxed);
    const std::uint64_t theirs2 = line.call[round & 1][2].load(std::memory_order_relaxed);
    if ((theirs0 & kRejectedBit) != 0) {
      // That rank rejected its arguments before moving anything and has
      // finished this round; so does this rank, and the communicator stays usable.
      release(round);
      throw Error(ErrorCode::invalid_argument,
                  "rank " + std::to_string(rank_) + ": " + call.describe() + ": rank " + std::to_string(peer) +
                      " rejected its arguments to " +
                      std::string(collective_name(static_cast<CollectiveKind>((theirs0 >> 48) & 0xff))) +
                      ", nothing was moved: " + std::string(header_->rejection[peer]));
    }
    if (theirs0 != mine0 || theirs1 != mine1 || theirs2 != mine2) {
      const CallDescriptor other = CallDescriptor::unpack(theirs0, theirs1, theirs2);
      fail_and_abort(ErrorCode::mismatch, "mismatched collective calls: rank " + std::to_string(rank_) + " called " +
                                              call.describe() + " but rank " + std::to_string(peer) + " called " +
                                              other.describe());
    }
  }
  // Every rank publishes a round only after releasing all earlier ones, so
  // every rank has now finished reading round - 1.
  consumed_floor_ = std::max(consumed_floor_, round - 1);
  // Every rank's copy of this round is visible: reading it starts now.
  if (store_sample_.pending) store_sample_.read_start = ticks();
}

namespace {

// Pieces of a split step start at multiples of this many bytes (or elements,
// for a fold): whole cache lines, and whole vectors of every kernel.
constexpr std::size_t kPieceGranule = 256;

int split_parts(const CopyPolicy& policy, std::size_t bytes) {
  if (policy.workers == nullptr || bytes < policy.split_min_bytes) return 1;
  return policy.workers->threads();
}

// piece(begin, end) for every non-empty piece of [0, total) cut in `parts`,
// on the rank's threads; returns when all are done.
template <class Piece>
void run_pieces(WorkerPool& workers, int parts, std::size_t total, const Piece& piece) {
  workers.run(parts, [&](int i) {
    const std::size_t begin = piece_begin(total, parts, i, kPieceGranule);
    const std::size_t end = piece_begin(total, parts, i + 1, kPieceGranule);
    if (begin != end) piece(begin, end);
  });
}

// copy_to_shared(dst, src, bytes, streaming), split among the rank's threads
// from policy.split_min_bytes up. Each helper fences its own streaming stores
// (copy_to_shared ends with sfence) before run() sees it finish, so whatever
// is published after this returns comes after all of them.
void copy_split(const CopyPolicy& policy, std::byte* dst, const std::byte* src, std::size_t bytes,
                std::size_t streaming) {
  const int parts = split_parts(policy, bytes);
  if (parts == 1) {
    copy_to_shared(dst, src, bytes, streaming);
    return;
  }
  run_pieces(*policy.workers, parts, bytes, [&](std::size_t begin, std::size_t end) {
    copy_to_shared(dst + begin, src + begin, end - begin, streaming);
  });
}

}  // namespace

void ShmChannel::copy_in(std::byte* slot, const std::byte* src, std::size_t bytes, std::size_t skip_begin,
                         std::size_t skip_end) {
  // copy_to_shared's threshold: 0 streams everything, SIZE_MAX nothing.
  std::size_t streaming = copy_policy_.streaming_min_bytes;
  StoreChooser::Choice choice;
  std::uint64_t start = 0;
  std::uint64_t claim_ticks = 0;
  const PendingClaim claim = pending_claim_;
  pending_claim_ = {};
  if (copy_policy_.measured_stores) {
    if (claim.round == last_round_ && claim.bytes == bytes && claim.choice.stores == StoreChooser::claimed) {
      choice = claim.choice;  // the slot was claimed for this copy: ordinary stores
      claim_ticks = claim.ticks;
      store_chooser_.count_claimed(bytes);
    } else {
      choice = store_chooser_.choose(bytes);
      // Not claiming was tried on purpose: see what the copy costs.
      if (claim.round == last_round_ && claim.choice.explored) choice.timed = true;
    }
    streaming = choice.stores == StoreChooser::streaming ? 0 : SIZE_MAX;
    if (choice.timed) start = ticks();
  }
  // Each piece streams or not by the whole step's size (the choice above is
  // for `bytes`, skipped range included).
  if (streaming != 0 && streaming != SIZE_MAX) streaming = bytes >= streaming ? 0 : SIZE_MAX;
  const auto copy_range = [&](std::size_t from, std::size_t to) {
    if (from < to) copy_split(copy_policy_, slot + from, src + from, to - from, streaming);
  };
  if (skip_begin < skip_end) {
    copy_range(0, skip_begin);
    copy_range(skip_end, bytes);
  } else {
    copy_range(0, bytes);
  }
  store_sample_.pending = choice.timed;
  if (choice.timed) {
    store_sample_.choice = choice;
    store_sample_.bytes = bytes;
    store_sample_.copy_ticks = ticks() - start + claim_ticks;
    store_sample_.read_start = 0;
  }
}

void ShmChannel::copy_out(std::byte* dst, const std::byte* src, std::size_t bytes, ResultStores* result) const {
  // copy_to_shared streams from its threshold up: 0 always, SIZE_MAX never.
  const std::size_t streaming =
      result != nullptr && result->choice.stores == StoreChooser::streaming ? 0 : SIZE_MAX;
  copy_split(copy_policy_, dst, src, bytes, streaming);
}

void ShmChannel::fold(FoldFunction kernel, std::byte* dst, const void* const* sources, int n, std::size_t count,
                      std::size_t element, ResultStores* result) const {
  const bool stream = result != nullptr && result->choice.stores == StoreChooser::streaming;
  const auto fold_piece = [&](std::byte* to, const void* const* from, std::size_t elements) {
    if (stream) {
      fold_streaming(kernel, to, from, n, elements, element);
    } else {
      kernel(to, from, n, elements);
    }
  };
  const int parts = split_parts(copy_policy_, count * element);
  if (parts == 1) {
    fold_piece(dst, sources, count);
    return;
  }
  run_pieces(*copy_policy_.workers, parts, count, [&](std::size_t begin, std::size_t end) {
    std::array<const void*, kMaxWorldSize> moved{};
    for (int k = 0; k < n; ++k) {
      moved[static_cast<std::size_t>(k)] = static_cast<const std::byte*>(sources[k]) + begin * element;
    }
    fold_piece(dst + begin * element, moved.data(), end - begin);
  });
}

ShmChannel::ResultStores ShmChannel::choose_result_stores(std::size_t bytes, ResultKind kind) {
  ResultStores result;
  result.bytes = bytes;
  result.kind = kind;
  if (!copy_policy_.measured_results) {
    if (bytes >= copy_policy_.result_streaming_min_bytes) result.choice.stores = StoreChooser::streaming;
  } else if (bytes >= min_streamed_result_bytes(kind)) {
    result.choice = result_choosers_[static_cast<std::size_t>(kind)].choose(bytes);
    if (result.choice.timed) result.start = ticks();
  }
  return result;
}

void ShmChannel::wait_all_published(std::uint64_t round, const CallDescriptor& call, ResultStores& result) {
  if (!result.choice.timed || result.waited) {
    wait_all_published(round, call);
    return;
  }
  const std::uint64_t before = ticks();
  wait_all_published(round, call);
  result.excluded += ticks() - before;
  result.waited = true;
}

void ShmChannel::record_result_stores(const ResultStores& result) {
  if (!result.choice.timed) return;
  const std::uint64_t spent = ticks() - result.start;
  result_choosers_[static_cast<std::size_t>(result.kind)].record(result.bytes, result.choice,
                                                                 spent > result.excluded ? spent - result.excluded : 0);
}

void ShmChannel::publish_rejection(const CallDescriptor& call, const char* reason) {
  std::snprintf(header_->rejection[rank_], sizeof(header_->rejection[rank_]), "%s", reason);
  const std::uint64_t round = next_round();
  ReadyLine& line = ready_[rank_];
  line.call[round & 1][0].store(call.word0() | kRejectedBit, std::memory_order_relaxed);
  line.call[round & 1][1].store(call.word1(), std::memory_order_relaxed);
  line.call[round & 1][2].store(call.word2(), std::memory_order_relaxed);
  line.round.store(round, std::memory_order_release);
  wake_sleepers();
  // Like every round, wait until all ranks have published it: ranks stay at
  // most one round apart, which the descriptor slots (by round parity) rely on.
  for (int peer = 0; peer < world_size_; ++peer) {
    if (peer == rank_) continue;
    std::atomic<std::uint64_t>& counter = ready_[peer].round;
    wait_for(
        peer, [&] { return counter.load(std::memory_order_acquire) >= round; }, call, "publish",
        BlockedNeed::published, round);
  }
  release(round);
}

void ShmChannel::release(std::uint64_t round) {
  consumed_[rank_].round.store(round, std::memory_order_release);
  wake_sleepers();
  if (store_sample_.pending && store_sample_.read_start != 0) {
    store_sample_.pending = false;
    store_chooser_.record(store_sample_.bytes, store_sample_.choice,
                          store_sample_.copy_ticks + (ticks() - store_sample_.read_start));
  }
}

bool ShmChannel::may_claim_next_slot() const {
  // The next round's slot last held round next - 2: free once every rank has
  // released that (always so after a completed round, see wait_all_published).
  const std::uint64_t next = last_round_ + 1;
  return next >= 3 && consumed_floor_ >= next - 2;
}

std::uint64_t ShmChannel::claim_lines(std::uint64_t round, std::size_t offset, std::size_t bytes) {
  // The slot's bytes are dead until the next copy overwrites them: any value will do.
  auto* lines = reinterpret_cast<volatile unsigned char*>(slot(rank_, round));
  const std::size_t end = offset + std::min(bytes, chunk_bytes_ - offset);
  const std::uint64_t start = ticks();
  for (std::size_t i = offset; i < end; i += 64) lines[i] = 0;
  return ticks() - start;
}

void ShmChannel::claim_next_slot(std::size_t bytes) {
  if (bytes == 0 || bytes > copy_policy_.claim_max_bytes || !may_claim_next_slot()) return;
  StoreChooser::Choice choice{StoreChooser::claimed, false, false};
  if (copy_policy_.measured_stores) {
    choice = store_chooser_.claim(bytes);
  } else if (bytes >= copy_policy_.streaming_min_bytes) {
    return;  // streaming stores need no ownership of the lines
  }
  const std::uint64_t round = last_round_ + 1;
  pending_claim_ = {round, bytes, choice, 0};
  if (choice.stores == StoreChooser::claimed) pending_claim_.ticks = claim_lines(round, 0, bytes);
}

void ShmChannel::claim_next_slot_range(std::size_t offset, std::size_t bytes) {
  if (bytes == 0 || bytes > copy_policy_.claim_max_bytes || offset >= chunk_bytes_ || !may_claim_next_slot()) return;
  claim_lines(last_round_ + 1, offset, bytes);
}

void ShmChannel::wake_sleepers_of(int rank) const {
  // One load of a line that only napping ranks write: nearly free when, as on
  // the hot path, nobody naps.
  WakeLine& wake = header_->wake[rank];
  if (wake.sleepers.load(std::memory_order_relaxed) == 0) return;
  wake.generation.fetch_add(1, std::memory_order_release);
  futex_wake_all(wake.generation, FutexScope::shared);
}

}  // namespace tpcomm::detail
