#include "algorithms/point_to_point.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.hpp"

namespace tpcomm::detail {
namespace {

struct Progress {
  std::size_t chunks_total = 0;
  std::size_t chunks_done = 0;
  bool done() const { return chunks_done == chunks_total; }
};

// Tries to move one chunk of `t`; returns true if it did.
bool try_send(ShmChannel& channel, const Transfer& t, Progress& p, const CallDescriptor& call) {
  const int me = channel.rank();
  const std::uint64_t k = channel.sent_to(t.peer) + 1;  // chunk number on this pair, from 1
  if (k > 2 && channel.pair_ack(me, t.peer).acked.load(std::memory_order_acquire) < k - 2) return false;
  const std::size_t offset = p.chunks_done * channel.pair_bytes();
  const std::size_t length = std::min(channel.pair_bytes(), t.bytes - std::min(t.bytes, offset));
  if (length > 0) std::memcpy(channel.pair_slot(me, t.peer, k), t.buffer + offset, length);
  PairSendLine& line = channel.pair_send(me, t.peer);
  line.message_bytes[k & 1].store(t.bytes, std::memory_order_relaxed);
  line.message_dtype[k & 1].store(static_cast<std::uint64_t>(t.dtype), std::memory_order_relaxed);
  line.sent.store(k, std::memory_order_release);
  channel.wake_sleepers();
  channel.sent_to(t.peer) = k;
  ++p.chunks_done;
  (void)call;
  return true;
}

bool try_receive(ShmChannel& channel, const Transfer& t, Progress& p, const CallDescriptor& call) {
  const int me = channel.rank();
  const std::uint64_t k = channel.received_from(t.peer) + 1;
  PairSendLine& line = channel.pair_send(t.peer, me);
  if (line.sent.load(std::memory_order_acquire) < k) return false;
  const std::uint64_t their_bytes = line.message_bytes[k & 1].load(std::memory_order_relaxed);
  const auto their_dtype = static_cast<DataType>(line.message_dtype[k & 1].load(std::memory_order_relaxed));
  if (their_bytes != t.bytes || their_dtype != t.dtype) {
    const std::size_t their_element = their_dtype <= DataType::i64 ? dtype_size(their_dtype) : 1;
    channel.fail_and_abort(
        ErrorCode::mismatch,
        "rank " + std::to_string(me) + ": " + call.describe() + ": recv from rank " + std::to_string(t.peer) +
            " expects " + std::to_string(t.bytes / dtype_size(t.dtype)) + " x " + std::string(dtype_name(t.dtype)) +
            " but rank " + std::to_string(t.peer) + " sent " + std::to_string(their_bytes / their_element) + " x " +
            (their_dtype <= DataType::i64 ? std::string(dtype_name(their_dtype)) : std::string("?")));
  }
  const std::size_t offset = p.chunks_done * channel.pair_bytes();
  const std::size_t length = std::min(channel.pair_bytes(), t.bytes - std::min(t.bytes, offset));
  if (length > 0) std::memcpy(t.buffer + offset, channel.pair_slot(t.peer, me, k), length);
  channel.pair_ack(t.peer, me).acked.store(k, std::memory_order_release);
  channel.wake_sleepers();
  channel.received_from(t.peer) = k;
  ++p.chunks_done;
  return true;
}

}  // namespace

void run_transfers(ShmChannel& channel, std::span<const Transfer> transfers, const CallDescriptor& call) {
  std::vector<Progress> progress(transfers.size());
  std::size_t pending = 0;
  for (std::size_t i = 0; i < transfers.size(); ++i) {
    const std::size_t bytes = transfers[i].bytes;
    progress[i].chunks_total = std::max<std::size_t>(1, (bytes + channel.pair_bytes() - 1) / channel.pair_bytes());
    ++pending;
  }
  // Only the first unfinished transfer per (peer, direction) may move: that is
  // what keeps the messages of one pair in order.
  auto first_in_line = [&](std::size_t i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (!progress[j].done() && transfers[j].peer == transfers[i].peer &&
          transfers[j].is_send == transfers[i].is_send) {
        return false;
      }
    }
    return true;
  };
  Backoff backoff(channel.policy());
  std::uint32_t idle_rounds = 0;
  // Peers found dead when the periodic checks fell due. Liveness is sampled
  // before one more progress attempt: a peer that published its last chunk
  // and exited normally in between is not a failure.
  std::vector<int> dead_before_attempt;
  bool checks_pending = false;
  bool blocked = false;  // published in RankInfo once the checks first fall due
  auto doing = [&](const Transfer& t) {
    return std::string(t.is_send ? "receive what this rank sends" : "send what this rank receives");
  };
  while (pending > 0) {
    bool moved = false;
    for (std::size_t i = 0; i < transfers.size(); ++i) {
      if (progress[i].done() || !first_in_line(i)) continue;
      const Transfer& t = transfers[i];
      // Move as many chunks of this transfer as the pair allows right now.
      while (!progress[i].done() &&
             (t.is_send ? try_send(channel, t, progress[i], call) : try_receive(channel, t, progress[i], call))) {
        moved = true;
      }
      if (progress[i].done()) --pending;
    }
    if (pending == 0) break;
    if (moved) {
      backoff.restart();
      idle_rounds = 0;
      checks_pending = false;
      blocked = false;  // what this rank waits for has changed: record it afresh
      continue;
    }
    if (checks_pending) {
      checks_pending = false;
      channel.throw_if_aborted(call);
      for (std::size_t i = 0; i < transfers.size(); ++i) {
        if (progress[i].done()) continue;
        const int peer = transfers[i].peer;
        if (!blocked) {
          // Record exactly what this transfer waits for (see BlockedNeed).
          const Transfer& t = transfers[i];
          if (t.is_send) {
            channel.set_blocked(call.kind, peer, BlockedNeed::chunk_acked, channel.sent_to(peer) + 1 - 2);
          } else {
            channel.set_blocked(call.kind, peer, BlockedNeed::chunk_sent, channel.received_from(peer) + 1);
          }
          blocked = true;
        }
        if (std::find(dead_before_attempt.begin(), dead_before_attempt.end(), peer) != dead_before_attempt.end()) {
          channel.fail_peer_dead(peer, call, doing(transfers[i]));
        }
        channel.fail_if_cross_blocked(peer, call);
        channel.fail_if_expired(peer, backoff, call, doing(transfers[i]));
      }
    }
    // Nap until the peer of the first unfinished transfer moves (the others
    // wake this rank at the latest when the nap runs out).
    for (std::size_t i = 0; i < transfers.size(); ++i) {
      if (!progress[i].done()) {
        backoff.wake_on(&channel.wake_line(transfers[i].peer));
        break;
      }
    }
    if (backoff.pause()) {
      dead_before_attempt.clear();
      for (std::size_t i = 0; i < transfers.size(); ++i) {
        if (!progress[i].done() && !channel.peer_alive(transfers[i].peer)) {
          dead_before_attempt.push_back(transfers[i].peer);
        }
      }
      checks_pending = true;
    }
    if ((++idle_rounds & 63) == 0) channel.throw_if_aborted(call);
  }
  if (blocked) channel.clear_blocked();
}

}  // namespace tpcomm::detail
