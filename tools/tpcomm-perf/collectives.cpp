#include "collectives.hpp"

#include <array>
#include <cstring>

#include "reference.hpp"

namespace tpcomm::perf {
namespace {

// ---- bus-bandwidth factors (nccl-tests' PERFORMANCE.md) ---------------------------
// all_reduce: each byte crosses the bus 2(n-1)/n times in a ring (reduce-scatter
// then all-gather); the collectives that move one block per peer: (n-1)/n; a
// root sending or receiving everything: 1. They make busbw comparable across
// world sizes and with the hardware's peak.
double all_reduce_bus_factor(int world_size) { return 2.0 * (world_size - 1) / world_size; }
double per_peer_bus_factor(int world_size) { return static_cast<double>(world_size - 1) / world_size; }
double rooted_bus_factor(int /*world_size*/) { return 1.0; }
double no_bus_factor(int /*world_size*/) { return 0.0; }

// ---- usable message sizes ------------------------------------------------------
std::size_t any_count(std::size_t count, int /*world_size*/) { return count; }
// The block collectives move world_size equal blocks.
std::size_t whole_blocks(std::size_t count, int world_size) {
  const auto n = static_cast<std::size_t>(world_size);
  return count / n * n;
}

std::size_t block_of(std::size_t count, const Participant& me) {
  return count / static_cast<std::size_t>(me.world_size);
}
bool is_root(const Participant& me) { return me.rank == me.root; }
std::size_t block_offset(int rank, std::size_t block) { return static_cast<std::size_t>(rank) * block; }

Shape layout(std::size_t send_count, std::size_t recv_count, std::size_t in_place_send_offset = 0,
             std::size_t in_place_recv_offset = 0) {
  return {.send_count = send_count,
          .recv_count = recv_count,
          .in_place_send_offset = in_place_send_offset,
          .in_place_recv_offset = in_place_recv_offset};
}

// ---- serial expectations ---------------------------------------------------------
const std::byte* element(const void* base, std::size_t index, DataType dtype) {
  return static_cast<const std::byte*>(base) + index * dtype_size(dtype);
}

void copy_elements(void* out, std::size_t out_index, const void* in, std::size_t in_index,
                   std::size_t count, DataType dtype) {
  if (count == 0) return;  // buffers of empty blocks may be null
  std::memcpy(static_cast<std::byte*>(out) + out_index * dtype_size(dtype), element(in, in_index, dtype),
              count * dtype_size(dtype));
}

// out block r = block `source_block` of rank r's input, for every rank r.
void concatenate(const std::vector<const void*>& inputs, std::size_t source_block, std::size_t block,
                 void* out, DataType dtype) {
  for (std::size_t r = 0; r < inputs.size(); ++r)
    copy_elements(out, r * block, inputs[r], source_block * block, block, dtype);
}

// ---- all_reduce --------------------------------------------------------------------
// Also all_to_all's: world_size blocks in, world_size blocks out.
Shape same_size_shape(std::size_t count, const Participant& /*me*/) { return layout(count, count); }
void run_all_reduce(Communicator& comm, const void* send, void* recv, const Shape& shape, DataType dtype,
                    ReduceOp op, const Participant& /*me*/) {
  comm.all_reduce(send, recv, shape.recv_count, dtype, op);
}
void expect_all_reduce(DataType dtype, ReduceOp op, const std::vector<const void*>& inputs, void* out,
                       const Shape& shape, const Participant& /*me*/) {
  reference::reduce(dtype, op, inputs, out, shape.recv_count);
}
std::string_view all_reduce_algorithm(const Communicator& comm, std::size_t bytes, DataType dtype) {
  return comm.all_reduce_algorithm(bytes, dtype);
}

// ---- reduce_scatter: rank r keeps block r of the reduction -------------------------
Shape reduce_scatter_shape(std::size_t count, const Participant& me) {
  const std::size_t block = block_of(count, me);
  return layout(count, block, 0, block_offset(me.rank, block));
}
void run_reduce_scatter(Communicator& comm, const void* send, void* recv, const Shape& shape,
                        DataType dtype, ReduceOp op, const Participant& /*me*/) {
  comm.reduce_scatter(send, recv, shape.recv_count, dtype, op);
}
void expect_reduce_scatter(DataType dtype, ReduceOp op, const std::vector<const void*>& inputs, void* out,
                           const Shape& shape, const Participant& me) {
  std::vector<const void*> my_blocks;
  for (const void* input : inputs)
    my_blocks.push_back(element(input, block_offset(me.rank, shape.recv_count), dtype));
  reference::reduce(dtype, op, my_blocks, out, shape.recv_count);
}

// ---- all_gather: everyone receives every rank's block, in rank order --------------
Shape all_gather_shape(std::size_t count, const Participant& me) {
  const std::size_t block = block_of(count, me);
  return layout(block, count, block_offset(me.rank, block));
}
void run_all_gather(Communicator& comm, const void* send, void* recv, const Shape& shape, DataType dtype,
                    ReduceOp /*op*/, const Participant& /*me*/) {
  comm.all_gather(send, recv, shape.send_count, dtype);
}
void expect_gathered(DataType dtype, ReduceOp /*op*/, const std::vector<const void*>& inputs, void* out,
                     const Shape& shape, const Participant& /*me*/) {
  // recv_count is 0 on the non-root ranks of gather: nothing is expected there.
  concatenate(inputs, 0, shape.recv_count / inputs.size(), out, dtype);
}

// ---- broadcast: the root's input everywhere --------------------------------------
Shape broadcast_shape(std::size_t count, const Participant& me) {
  return layout(is_root(me) ? count : 0, count);
}
void run_broadcast(Communicator& comm, const void* send, void* recv, const Shape& shape, DataType dtype,
                   ReduceOp /*op*/, const Participant& me) {
  comm.broadcast(send, recv, shape.recv_count, dtype, me.root);
}
void expect_broadcast(DataType dtype, ReduceOp /*op*/, const std::vector<const void*>& inputs, void* out,
                      const Shape& shape, const Participant& me) {
  copy_elements(out, 0, inputs[static_cast<std::size_t>(me.root)], 0, shape.recv_count, dtype);
}

// ---- reduce: the reduction on the root only ---------------------------------------
Shape reduce_shape(std::size_t count, const Participant& me) {
  return layout(count, is_root(me) ? count : 0);
}
void run_reduce(Communicator& comm, const void* send, void* recv, const Shape& shape, DataType dtype,
                ReduceOp op, const Participant& me) {
  comm.reduce(send, recv, shape.send_count, dtype, op, me.root);
}

// ---- gather: every rank's block on the root ---------------------------------------
Shape gather_shape(std::size_t count, const Participant& me) {
  const std::size_t block = block_of(count, me);
  return is_root(me) ? layout(block, count, block_offset(me.root, block)) : layout(block, 0);
}
void run_gather(Communicator& comm, const void* send, void* recv, const Shape& shape, DataType dtype,
                ReduceOp /*op*/, const Participant& me) {
  comm.gather(send, recv, shape.send_count, dtype, me.root);
}

// ---- scatter: block r of the root's input to rank r -------------------------------
Shape scatter_shape(std::size_t count, const Participant& me) {
  const std::size_t block = block_of(count, me);
  return is_root(me) ? layout(count, block, 0, block_offset(me.root, block)) : layout(0, block);
}
void run_scatter(Communicator& comm, const void* send, void* recv, const Shape& shape, DataType dtype,
                 ReduceOp /*op*/, const Participant& me) {
  comm.scatter(send, recv, shape.recv_count, dtype, me.root);
}
void expect_scatter(DataType dtype, ReduceOp /*op*/, const std::vector<const void*>& inputs, void* out,
                    const Shape& shape, const Participant& me) {
  copy_elements(out, 0, inputs[static_cast<std::size_t>(me.root)], block_offset(me.rank, shape.recv_count),
                shape.recv_count, dtype);
}

// ---- all_to_all: block d of rank s goes to block s of rank d ----------------------
void run_all_to_all(Communicator& comm, const void* send, void* recv, const Shape& shape, DataType dtype,
                    ReduceOp /*op*/, const Participant& me) {
  comm.all_to_all(send, recv, block_of(shape.send_count, me), dtype);
}
void expect_all_to_all(DataType dtype, ReduceOp /*op*/, const std::vector<const void*>& inputs, void* out,
                       const Shape& shape, const Participant& me) {
  concatenate(inputs, static_cast<std::size_t>(me.rank), block_of(shape.recv_count, me), out, dtype);
}

// ---- sendrecv: a ring exchange; every rank sends to the next and receives from the
// previous one in one batch (nccl-tests' sendrecv) ----------------------------------
void run_sendrecv(Communicator& comm, const void* send, void* recv, const Shape& shape, DataType dtype,
                  ReduceOp /*op*/, const Participant& me) {
  if (me.world_size == 1) {
    std::memcpy(recv, send, shape.recv_count * dtype_size(dtype));
    return;
  }
  using Op = Communicator::PointToPoint;
  const Op ops[] = {
      {Op::Kind::recv, recv, shape.recv_count, dtype, (me.rank + me.world_size - 1) % me.world_size},
      {Op::Kind::send, const_cast<void*>(send), shape.send_count, dtype, (me.rank + 1) % me.world_size}};
  comm.batch(ops);
}
void expect_sendrecv(DataType dtype, ReduceOp /*op*/, const std::vector<const void*>& inputs, void* out,
                     const Shape& shape, const Participant& me) {
  const auto previous = static_cast<std::size_t>((me.rank + me.world_size - 1) % me.world_size);
  copy_elements(out, 0, inputs[previous], 0, shape.recv_count, dtype);
}

// ---- barrier: no data, time only ---------------------------------------------------
Shape empty_shape(std::size_t /*count*/, const Participant& /*me*/) { return layout(0, 0); }
void run_barrier(Communicator& comm, const void* /*send*/, void* /*recv*/, const Shape& /*shape*/,
                 DataType /*dtype*/, ReduceOp /*op*/, const Participant& /*me*/) {
  comm.barrier();
}
void expect_nothing(DataType /*dtype*/, ReduceOp /*op*/, const std::vector<const void*>& /*inputs*/,
                    void* /*out*/, const Shape& /*shape*/, const Participant& /*me*/) {}

std::string_view no_algorithm(const Communicator& /*comm*/, std::size_t /*bytes*/, DataType /*dtype*/) { return "-"; }

constexpr std::array table{
    Collective{.name = "all_reduce",
               .has_payload = true,
               .reduces = true,
               .rooted = false,
               .bus_factor = all_reduce_bus_factor,
               .usable_count = any_count,
               .shape = same_size_shape,
               .run = run_all_reduce,
               .expect = expect_all_reduce,
               .algorithm = all_reduce_algorithm},
    Collective{.name = "reduce_scatter",
               .has_payload = true,
               .reduces = true,
               .rooted = false,
               .bus_factor = per_peer_bus_factor,
               .usable_count = whole_blocks,
               .shape = reduce_scatter_shape,
               .run = run_reduce_scatter,
               .expect = expect_reduce_scatter,
               .algorithm = no_algorithm},
    Collective{.name = "all_gather",
               .has_payload = true,
               .reduces = false,
               .rooted = false,
               .bus_factor = per_peer_bus_factor,
               .usable_count = whole_blocks,
               .shape = all_gather_shape,
               .run = run_all_gather,
               .expect = expect_gathered,
               .algorithm = no_algorithm},
    Collective{.name = "broadcast",
               .has_payload = true,
               .reduces = false,
               .rooted = true,
               .bus_factor = rooted_bus_factor,
               .usable_count = any_count,
               .shape = broadcast_shape,
               .run = run_broadcast,
               .expect = expect_broadcast,
               .algorithm = no_algorithm},
    // The root expects what all_reduce would give it; the others nothing (recv_count 0).
    Collective{.name = "reduce",
               .has_payload = true,
               .reduces = true,
               .rooted = true,
               .bus_factor = rooted_bus_factor,
               .usable_count = any_count,
               .shape = reduce_shape,
               .run = run_reduce,
               .expect = expect_all_reduce,
               .algorithm = no_algorithm},
    Collective{.name = "gather",
               .has_payload = true,
               .reduces = false,
               .rooted = true,
               .bus_factor = per_peer_bus_factor,
               .usable_count = whole_blocks,
               .shape = gather_shape,
               .run = run_gather,
               .expect = expect_gathered,
               .algorithm = no_algorithm},
    Collective{.name = "scatter",
               .has_payload = true,
               .reduces = false,
               .rooted = true,
               .bus_factor = per_peer_bus_factor,
               .usable_count = whole_blocks,
               .shape = scatter_shape,
               .run = run_scatter,
               .expect = expect_scatter,
               .algorithm = no_algorithm},
    Collective{.name = "all_to_all",
               .has_payload = true,
               .reduces = false,
               .rooted = false,
               .bus_factor = per_peer_bus_factor,
               .usable_count = whole_blocks,
               .shape = same_size_shape,
               .run = run_all_to_all,
               .expect = expect_all_to_all,
               .algorithm = no_algorithm},
    Collective{.name = "sendrecv",
               .has_payload = true,
               .reduces = false,
               .rooted = false,
               .in_place = false,
               .bus_factor = rooted_bus_factor,
               .usable_count = any_count,
               .shape = same_size_shape,
               .run = run_sendrecv,
               .expect = expect_sendrecv,
               .algorithm = no_algorithm},
    Collective{.name = "barrier",
               .has_payload = false,
               .reduces = false,
               .rooted = false,
               .bus_factor = no_bus_factor,
               .usable_count = any_count,
               .shape = empty_shape,
               .run = run_barrier,
               .expect = expect_nothing,
               .algorithm = no_algorithm},
};

}  // namespace

std::span<const Collective> collectives() { return table; }

const Collective* find_collective(std::string_view name) {
  const auto found = std::ranges::find(table, name, &Collective::name);
  return found == table.end() ? nullptr : &*found;
}

}  // namespace tpcomm::perf
