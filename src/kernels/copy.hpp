// Copies into shared staging memory.
//
// A slot that a peer will read next is better written with non-temporal
// stores once the data is large: they skip reading the line first and do not
// leave it in this core's cache, where the peer would have to snoop it out.
// Non-temporal stores are weakly ordered, so the copy ends with an sfence: a
// later release store (publishing the round) then cannot overtake the data.
#pragma once

#include <cstddef>

namespace tpcomm::detail {

// memcpy for small sizes; streaming stores from `streaming_min_bytes` up.
void copy_to_shared(std::byte* dst, const std::byte* src, std::size_t bytes, std::size_t streaming_min_bytes);

}  // namespace tpcomm::detail
