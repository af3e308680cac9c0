// Chooses, per size class, between ordinary and streaming (non-temporal)
// stores for the copy into a staging slot, and whether to claim the slot at the
// end of the call before (ShmChannel::claim_next_slot), by what each has cost
// lately.
//
// Which stores are faster depends on where the machine's cores sit relative to
// each other, and on the measured machine that changes while a job runs: with
// a short cache-line handoff ordinary stores are 15-20 % faster from 1 MiB up
// and streaming stores 1.5x slower below 8 KiB; with a long one ordinary
// stores are 2.5-3x slower from 32 KiB up (each store first takes the line back
// from the core that read it). No fixed threshold is right in both states, so
// each rank measures both kinds: a round's cost is the copy plus the fold that
// reads what every rank copied (the wait for peers is left out: it measures
// their arrival, not the stores). The cheaper kind is used, and every
// so many copies of a size class try the other one, at the same copy
// on every rank (collectives are matched, so the counts agree) so that the
// explored cost is that of all ranks using it.
//
// The ranks must also make the same choice: a rank that claims while its peer
// does not counts its copies differently, and from then on the two explore at
// different copies (measured: one rank's counters hundreds of copies behind
// the other's, and calls stuck up to 3x slower until the next exploration).
// So the ranks of a communicator share a Board in their segment: rank 0 (the
// leader) publishes each size class's preferred kinds as its estimates
// change, and the others follow it. A follower may read a choice one call
// before the leader updates it; the counters still advance alike, since every
// copy is counted (count_claimed).
//
// ShmChannel also uses a chooser per kind of call for the stores that write an
// all_reduce's result (ShmChannel::ResultStores). The choice changes only how
// bytes are written, never what they are: results are the same either way.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace tpcomm::detail {

class StoreChooser {
 public:
  static constexpr std::size_t kClasses = 65;  // size classes: bit width of the byte count

  // Preferred kinds per size class, shared by the ranks (in SegmentHeader).
  // Zero-initialised means "ordinary stores, claims made".
  struct Board {
    std::atomic<std::uint8_t> stores[kClasses];     // Stores: ordinary or streaming
    std::atomic<std::uint8_t> unclaimed[kClasses];  // 1: do not claim
  };

  // `claimed`: ordinary stores into a slot claimed at the end of the previous
  // call (ShmChannel::claim_next_slot), whose cost includes the claim's.
  enum Stores : std::uint8_t { ordinary = 0, streaming = 1, claimed = 2 };

  // Copies below this size always use ordinary stores: they take a few
  // hundred nanoseconds, and timing them would cost a noticeable share.
  static constexpr std::size_t kMinBytes = 4096;
  // A size class tries the kind of stores that is not preferred once per
  // this many bytes copied, and at most once per kExploreEveryMin copies: a
  // wrong kind costs up to 3x on that copy, which so stays below 1 % of the
  // time for large copies, while small ones still look again within
  // milliseconds.
  static constexpr std::size_t kExploreBytes = std::size_t{256} << 20;
  static constexpr std::uint32_t kExploreEveryMin = 32;
  static constexpr std::uint32_t kExploreEveryMax = 1024;
  // One copy in this many of the preferred kind is timed.
  static constexpr std::uint32_t kSampleEvery = 4;
  // The first copies of a size class alternate between the kinds and keep
  // each kind's cheapest (the first touch of a slot page faults).
  static constexpr std::uint32_t kWarmupCopies = 8;
  // The first claims of a size class are all made and timed.
  static constexpr std::uint32_t kWarmupClaims = 4;

  struct Choice {
    Stores stores = ordinary;
    bool timed = false;     // time this copy and record() its cost
    bool explored = false;  // the kind that is not preferred at the moment
  };

  // The stores for the next copy of `bytes` (not claimed), counting it.
  Choice choose(std::size_t bytes) {
    if (bytes < kMinBytes) return {};
    SizeClass& c = classes_[size_class(bytes)];
    const std::uint32_t n = c.copies++;
    if (n < kWarmupCopies) return {static_cast<Stores>(n & 1), true, false};
    const Stores best = decide_stores(c, size_class(bytes));
    if (n % explore_every(bytes) == 0) return {other(best), true, true};
    return {best, n % kSampleEvery == 0, false};
  }

  // A copy of `bytes` into a claimed slot (claim() said so): counted like the
  // others, so that every rank's count of copies stays the same.
  void count_claimed(std::size_t bytes) {
    if (bytes >= kMinBytes) ++classes_[size_class(bytes)].copies;
  }

  // Share choices through `board` (nullptr: decide alone, as in the tests of
  // the chooser itself): the leader writes them, the others read them.
  void attach(Board* board, bool leader) {
    board_ = board;
    leader_ = leader;
  }

  // At the end of a call whose one copy was `bytes`: whether to claim the
  // next call's slot (stores == claimed) or not, counting the occasion. The
  // claimed copies form a kind of their own, compared with the cheaper of
  // the other two and explored like them; the copy of `bytes` that follows a
  // claim uses ordinary stores and is recorded as `claimed`. No claims
  // while the unclaimed kinds warm up. Copies below kMinBytes are always
  // claimed, untimed.
  Choice claim(std::size_t bytes) {
    if (bytes < kMinBytes) return {claimed, false, false};
    SizeClass& c = classes_[size_class(bytes)];
    // The unclaimed kinds warm up first: claimed copies would take their turns.
    if (c.copies < kWarmupCopies) return {ordinary, false, false};
    const std::uint32_t n = c.claims++;
    if (n < kWarmupClaims) return {claimed, true, false};
    const bool better = decide_claim(c, size_class(bytes));
    if (n % explore_every(bytes) == 0) return better ? Choice{ordinary, false, true} : Choice{claimed, true, true};
    return better ? Choice{claimed, n % kSampleEvery == 0, false} : Choice{ordinary, false, false};
  }

  // The cost (any unit, the same for every call) of a timed copy of `bytes`.
  void record(std::size_t bytes, Choice choice, std::uint64_t cost) {
    SizeClass& c = classes_[size_class(bytes)];
    const double per_byte = static_cast<double>(cost) / static_cast<double>(bytes);
    double& estimate = c.cost[choice.stores];
    const bool warming = choice.stores == claimed ? c.claims <= kWarmupClaims : c.copies <= kWarmupCopies;
    if (estimate == 0.0) {
      estimate = per_byte;
    } else if (warming) {
      if (per_byte < estimate) estimate = per_byte;
    } else {
      // Noise only ever adds time (interrupts, preemption): an explored cost,
      // seen rarely, is taken at once when it is lower and counts for half
      // when it is higher, at most 4x; the preferred kind's, seen often,
      // drifts by an eighth.
      const double sample = per_byte < 4 * estimate ? per_byte : 4 * estimate;
      if (choice.explored) {
        estimate = sample < estimate ? sample : estimate + 0.5 * (sample - estimate);
      } else {
        estimate += 0.125 * (sample - estimate);
      }
    }
  }

  // The kind a copy of `bytes` prefers now (ordinary below kMinBytes).
  Stores preferred(std::size_t bytes) const {
    return bytes < kMinBytes ? ordinary : preferred(classes_[size_class(bytes)]);
  }
  // The current cost estimate per byte of one kind (0: not measured yet).
  double cost_per_byte(std::size_t bytes, Stores stores) const { return classes_[size_class(bytes)].cost[stores]; }

 private:
  struct SizeClass {
    double cost[3] = {0.0, 0.0, 0.0};  // per Stores
    std::uint32_t copies = 0;          // unclaimed copies chosen
    std::uint32_t claims = 0;          // occasions to claim
  };
  static double cheapest_unclaimed(const SizeClass& c) {
    const double a = c.cost[ordinary], b = c.cost[streaming];
    return a == 0.0 ? b : b == 0.0 ? a : (a < b ? a : b);
  }
  // Copies between two explorations of a size class: a power of two.
  static std::uint32_t explore_every(std::size_t bytes) {
    const std::size_t every = std::bit_floor(kExploreBytes / bytes);
    return static_cast<std::uint32_t>(every < kExploreEveryMin   ? kExploreEveryMin
                                      : every > kExploreEveryMax ? kExploreEveryMax
                                                                 : every);
  }
  static std::size_t size_class(std::size_t bytes) { return static_cast<std::size_t>(std::bit_width(bytes)); }
  static Stores other(Stores s) { return s == ordinary ? streaming : ordinary; }
  static Stores preferred(const SizeClass& c) {
    return c.cost[streaming] != 0.0 && c.cost[streaming] < c.cost[ordinary] ? streaming : ordinary;
  }

  // With a board: the leader publishes its own choice `mine` and keeps it, a
  // follower takes the leader's. Without one, `mine`.
  std::uint8_t agreed(std::atomic<std::uint8_t>& shared, std::uint8_t mine) const {
    if (!leader_) return shared.load(std::memory_order_relaxed);
    if (shared.load(std::memory_order_relaxed) != mine) shared.store(mine, std::memory_order_relaxed);
    return mine;
  }
  Stores decide_stores(const SizeClass& c, std::size_t index) const {
    const Stores mine = preferred(c);
    return board_ == nullptr ? mine : static_cast<Stores>(agreed(board_->stores[index], mine));
  }
  bool decide_claim(const SizeClass& c, std::size_t index) const {
    const double unclaimed = cheapest_unclaimed(c);
    const bool mine = unclaimed == 0.0 || c.cost[claimed] < unclaimed;
    return board_ == nullptr ? mine : agreed(board_->unclaimed[index], mine ? 0 : 1) == 0;
  }

  std::array<SizeClass, kClasses> classes_{};
  Board* board_ = nullptr;
  bool leader_ = true;
};

}  // namespace tpcomm::detail
