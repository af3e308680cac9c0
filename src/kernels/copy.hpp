// Copies into shared staging memory, and folds that stream their result.
//
// A slot that a peer will read next is better written with non-temporal
// stores once the data is large: they skip reading the line first and do not
// leave it in this core's cache, where the peer would have to snoop it out.
// Non-temporal stores are weakly ordered, so the copy ends with an sfence: a
// later release store (publishing the round) then cannot overtake the data.
#pragma once

#include <cstddef>

#include "kernels/reduce.hpp"

namespace tpcomm::detail {

// memcpy for small sizes; streaming stores from `streaming_min_bytes` up.
void copy_to_shared(std::byte* dst, const std::byte* src, std::size_t bytes, std::size_t streaming_min_bytes);

// kernel(dst, sources, n, count), for elements of `element` bytes and at
// most TPCOMM_MAX_WORLD_SIZE sources, with the result written by
// non-temporal stores: the kernel folds a small tile into a buffer in L1,
// which is streamed to dst, so every kernel gets a streaming form without a
// copy of its own. The bytes written are the kernel's, bit for bit. For a
// large result whose lines are not in cache this skips reading each line
// before writing it (ShmChannel::ResultStores says when). dst may be one of
// the sources exactly, as for the kernel.
void fold_streaming(FoldFunction kernel, std::byte* dst, const void* const* sources, int n, std::size_t count,
                    std::size_t element);

}  // namespace tpcomm::detail
