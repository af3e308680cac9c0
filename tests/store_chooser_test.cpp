// StoreChooser against a simulated machine whose costs per kind of stores are
// known, so the right choice at every moment is known too.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "shm/store_chooser.hpp"

using tpcomm::detail::StoreChooser;

namespace {

constexpr std::size_t K = 1024;
constexpr std::size_t M = 1024 * 1024;

// Costs per byte of each kind in one state of the simulated machine.
struct State {
  double ordinary;
  double streaming;
  double of(StoreChooser::Stores s) const { return s == StoreChooser::ordinary ? ordinary : streaming; }
};

// Runs `copies` copies of `bytes` through `chooser` on `state`; returns the
// total cost and counts the copies that used each kind.
struct Tally {
  double cost = 0;
  int ordinary = 0;
  int streaming = 0;
};
Tally run(StoreChooser& chooser, std::size_t bytes, State state, int copies) {
  Tally result;
  for (int i = 0; i < copies; ++i) {
    const StoreChooser::Choice choice = chooser.choose(bytes);
    const double cost = state.of(choice.stores) * static_cast<double>(bytes);
    result.cost += cost;
    (choice.stores == StoreChooser::ordinary ? result.ordinary : result.streaming) += 1;
    if (choice.timed) chooser.record(bytes, choice, static_cast<std::uint64_t>(cost));
  }
  return result;
}

}  // namespace

TEST(StoreChooser, SmallCopiesUseOrdinaryStoresUntimedAndAreAlwaysClaimed) {
  StoreChooser chooser;
  for (int i = 0; i < 100; ++i) {
    const StoreChooser::Choice copy = chooser.choose(StoreChooser::kMinBytes - 1);
    const StoreChooser::Choice claim = chooser.claim(StoreChooser::kMinBytes - 1);
    EXPECT_EQ(copy.stores, StoreChooser::ordinary);
    EXPECT_EQ(claim.stores, StoreChooser::claimed);
    EXPECT_FALSE(copy.timed || claim.timed);
  }
  EXPECT_EQ(chooser.preferred(64), StoreChooser::ordinary);
}

TEST(StoreChooser, FirstCopiesTryBothKindsAndKeepTheCheapest) {
  StoreChooser chooser;
  // The first copy of each kind page-faults (1000x); the cheapest sample counts.
  const double faulting = 1000.0;
  for (std::uint32_t i = 0; i < StoreChooser::kWarmupCopies; ++i) {
    const StoreChooser::Choice choice = chooser.choose(64 * K);
    EXPECT_EQ(choice.stores, i % 2 == 0 ? StoreChooser::ordinary : StoreChooser::streaming) << i;
    EXPECT_TRUE(choice.timed);
    const double per_byte = (choice.stores == StoreChooser::ordinary ? 3.0 : 1.0) * (i < 2 ? faulting : 1.0);
    chooser.record(64 * K, choice, static_cast<std::uint64_t>(per_byte * 64 * K));
  }
  EXPECT_DOUBLE_EQ(chooser.cost_per_byte(64 * K, StoreChooser::ordinary), 3.0);
  EXPECT_DOUBLE_EQ(chooser.cost_per_byte(64 * K, StoreChooser::streaming), 1.0);
  EXPECT_EQ(chooser.preferred(64 * K), StoreChooser::streaming);
  // Size classes are separate: 1 MiB has not been measured.
  EXPECT_EQ(chooser.preferred(M), StoreChooser::ordinary);
  EXPECT_EQ(chooser.cost_per_byte(M, StoreChooser::streaming), 0.0);
}

TEST(StoreChooser, UsesTheCheaperKindAndExploresOnAFixedSchedule) {
  for (const std::size_t bytes : {4 * K, 256 * K, M, 64 * M}) {
    StoreChooser chooser;
    run(chooser, bytes, {2.0, 1.0}, static_cast<int>(StoreChooser::kWarmupCopies));
    // After the warm-up: streaming, except one exploration of ordinary stores
    // per period, at the same copy numbers on every rank (a pure function of
    // the count), the period growing with the size within its bounds.
    std::uint32_t period = 0;
    std::uint32_t last = 0;
    for (std::uint32_t n = StoreChooser::kWarmupCopies; n < 5000; ++n) {
      const StoreChooser::Choice choice = chooser.choose(bytes);
      if (choice.explored) {
        EXPECT_EQ(choice.stores, StoreChooser::ordinary);
        if (last != 0) period = n - last;
        last = n;
      } else {
        EXPECT_EQ(choice.stores, StoreChooser::streaming) << bytes << " copy " << n;
      }
      if (choice.timed) {
        chooser.record(bytes, choice,
                       static_cast<std::uint64_t>((choice.stores == StoreChooser::ordinary ? 2.0 : 1.0) *
                                                  static_cast<double>(bytes)));
      }
    }
    EXPECT_GE(period, StoreChooser::kExploreEveryMin) << bytes;
    EXPECT_LE(period, StoreChooser::kExploreEveryMax) << bytes;
    EXPECT_EQ(last % period, 0u) << bytes;
    if (bytes == 4 * K) {
      EXPECT_EQ(period, StoreChooser::kExploreEveryMax);
    } else if (bytes == M) {
      EXPECT_EQ(period, StoreChooser::kExploreBytes / M);
    } else if (bytes == 64 * M) {
      EXPECT_EQ(period, StoreChooser::kExploreEveryMin);
    }
  }
}

TEST(StoreChooser, FollowsTheMachineWhenItChangesState) {
  // The two states measured on a 2-vCPU VM (per byte, 1 MiB copies): a short
  // handoff, where ordinary stores are 20 % cheaper, and a long one, where
  // they are 3x dearer. The chooser must switch within a few explorations and
  // cost little more than always choosing right.
  const State fast{0.8, 1.0};
  const State slow{3.0, 1.0};
  StoreChooser chooser;
  const std::size_t bytes = M;
  const int per_state = 5000;
  double total = 0;
  double oracle = 0;
  for (int flip = 0; flip < 6; ++flip) {
    const State state = flip % 2 == 0 ? fast : slow;
    const Tally r = run(chooser, bytes, state, per_state);
    total += r.cost;
    oracle += std::min(state.ordinary, state.streaming) * static_cast<double>(bytes) * per_state;
    const bool ordinary_wins = state.ordinary < state.streaming;
    EXPECT_EQ(chooser.preferred(bytes), ordinary_wins ? StoreChooser::ordinary : StoreChooser::streaming)
        << "state " << flip;
    // Nearly every copy of the state used the cheaper kind: at most a few
    // exploration periods to notice, then one copy per period.
    const int wrong = ordinary_wins ? r.streaming : r.ordinary;
    EXPECT_LT(wrong, per_state / 10) << "state " << flip;
  }
  EXPECT_LT(total, oracle * 1.05);
}

TEST(StoreChooser, ANoisyCopyDoesNotFlipTheChoice) {
  StoreChooser chooser;
  const std::size_t bytes = 256 * K;
  run(chooser, bytes, {1.0, 2.0}, 200);
  ASSERT_EQ(chooser.preferred(bytes), StoreChooser::ordinary);
  // A preempted copy of the preferred kind (100x) counts at most 4x, by an eighth.
  for (;;) {
    const StoreChooser::Choice choice = chooser.choose(bytes);
    if (!choice.timed || choice.explored) continue;
    chooser.record(bytes, choice, static_cast<std::uint64_t>(100.0 * static_cast<double>(bytes)));
    break;
  }
  EXPECT_EQ(chooser.preferred(bytes), StoreChooser::ordinary);
  EXPECT_LT(chooser.cost_per_byte(bytes, StoreChooser::ordinary), 1.5);
}

// Claims: a kind of their own (ordinary stores after a claim, the claim's time
// included), compared with the cheaper of the other two.
namespace {

// One call of `bytes` on a machine where an unclaimed copy costs what
// `machine` says for its kind and a claimed one (claim included) `with_claim`
// per byte, after the previous call's claim decision `before`; returns this
// call's claim decision, and stores the kind of this call's copy (claimed is
// a kind of its own) in *kind if given. As ShmChannel::copy_in does, a copy
// after a claim explored away is timed.
StoreChooser::Choice call_with_claims(StoreChooser& chooser, std::size_t bytes, State machine, double with_claim,
                                      StoreChooser::Choice before, int* kind = nullptr) {
  const auto cost = [&](double per_byte) { return static_cast<std::uint64_t>(per_byte * static_cast<double>(bytes)); };
  if (before.stores == StoreChooser::claimed) {
    // The slot was claimed: the copy uses ordinary stores and counts as claimed.
    chooser.count_claimed(bytes);
    if (before.timed) chooser.record(bytes, before, cost(with_claim));
    if (kind != nullptr) *kind = StoreChooser::claimed;
  } else {
    const StoreChooser::Choice choice = chooser.choose(bytes);
    if (choice.timed || before.explored) chooser.record(bytes, choice, cost(machine.of(choice.stores)));
    if (kind != nullptr) *kind = choice.stores;
  }
  return chooser.claim(bytes);
}

}  // namespace

TEST(StoreChooser, ClaimsWhereClaimingMeasuresCheaperAndNotWhereItIsDearer) {
  for (const double with_claim : {0.5, 3.0}) {
    StoreChooser chooser;
    const std::size_t bytes = 64 * K;
    StoreChooser::Choice decision{StoreChooser::ordinary, false, false};
    int claims = 0;
    const int calls = 4000;
    for (int i = 0; i < calls; ++i) {
      decision = call_with_claims(chooser, bytes, {1.0, 1.0}, with_claim, decision);
      claims += decision.stores == StoreChooser::claimed ? 1 : 0;
    }
    if (with_claim < 1.0) {
      EXPECT_GT(claims, calls * 9 / 10) << "claiming is cheaper: nearly every call claims";
    } else {
      EXPECT_LT(claims, calls / 10) << "claiming is dearer: nearly no call claims";
      EXPECT_GT(claims, StoreChooser::kWarmupClaims) << "but it is still tried now and then";
    }
  }
}

TEST(StoreChooser, StartsClaimingWhenClaimsBecomeCheaper) {
  StoreChooser chooser;
  const std::size_t bytes = 64 * K;
  StoreChooser::Choice decision{StoreChooser::ordinary, false, false};
  for (int i = 0; i < 3000; ++i) decision = call_with_claims(chooser, bytes, {1.0, 1.0}, 3.0, decision);
  ASSERT_NE(chooser.claim(bytes).stores, StoreChooser::claimed);
  // Within two exploration periods (1024 calls each at 64 KiB) it claims again.
  int claims = 0;
  for (int i = 0; i < 6000; ++i) {
    decision = call_with_claims(chooser, bytes, {1.0, 1.0}, 0.5, decision);
    if (i >= 3000) claims += decision.stores == StoreChooser::claimed ? 1 : 0;
  }
  EXPECT_GT(claims, 2700);
}

// Ranks share their choices: rank 0 decides, the others follow, even where
// their own measurements disagree (they see their peer's stores too, and a
// rank that claims while its peer does not would count copies differently and
// explore at other copies from then on).
namespace {

struct Rank {
  StoreChooser chooser;
  State machine;      // what this rank measures for unclaimed copies
  double with_claim;  // and for claimed ones
  StoreChooser::Choice pending{StoreChooser::ordinary, false, false};  // the last claim decision
};

// One call on every rank; returns each rank's copy kind.
std::vector<int> call_on_all(std::vector<Rank>& ranks, std::size_t bytes) {
  std::vector<int> kinds(ranks.size());
  for (std::size_t r = 0; r < ranks.size(); ++r) {
    Rank& rank = ranks[r];
    rank.pending = call_with_claims(rank.chooser, bytes, rank.machine, rank.with_claim, rank.pending, &kinds[r]);
  }
  return kinds;
}

int disagreements(bool shared) {
  StoreChooser::Board board{};
  // Rank 0 finds streaming cheapest and claims dear; rank 1 the opposite.
  std::vector<Rank> ranks(2);
  ranks[0].machine = {2.0, 1.0};
  ranks[0].with_claim = 3.0;
  ranks[1].machine = {1.0, 2.0};
  ranks[1].with_claim = 0.5;
  if (shared) {
    ranks[0].chooser.attach(&board, true);
    ranks[1].chooser.attach(&board, false);
  }
  int differ = 0;
  for (int call = 0; call < 5000; ++call) {
    const std::vector<int> kinds = call_on_all(ranks, 64 * K);
    differ += kinds[0] != kinds[1] ? 1 : 0;
  }
  return differ;
}

}  // namespace

TEST(StoreChooser, RanksSharingABoardMakeTheSameChoiceOnEveryCall) {
  EXPECT_EQ(disagreements(true), 0);
  // Negative control: deciding alone, the ranks disagree on most calls.
  EXPECT_GT(disagreements(false), 2500);
}

TEST(StoreChooser, NoClaimsWhileTheUnclaimedKindsWarmUp) {
  StoreChooser chooser;
  const std::size_t bytes = 256 * K;
  for (std::uint32_t i = 0; i < StoreChooser::kWarmupCopies; ++i) {
    const StoreChooser::Choice copy = chooser.choose(bytes);
    EXPECT_EQ(copy.stores, i % 2 == 0 ? StoreChooser::ordinary : StoreChooser::streaming) << "copy " << i;
    chooser.record(bytes, copy, 1000);
    if (i + 1 < StoreChooser::kWarmupCopies) {
      EXPECT_NE(chooser.claim(bytes).stores, StoreChooser::claimed) << "after copy " << i;
    }
  }
  EXPECT_EQ(chooser.claim(bytes).stores, StoreChooser::claimed) << "then the claims warm up";
}
