// How a job id becomes part of a shared-memory segment name. Shared by the
// library and tpcomm-run (which removes a failed job's segments), so that
// both derive the same name from the same id. Header-only: tpcomm-run does
// not link the library.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace tpcomm::detail {

// Safe ids (1..64 characters of [A-Za-z0-9_.]) stay readable; any other id
// becomes "h" + the 16 hex digits of its FNV-1a hash.
inline std::string job_token(std::string_view job_id) {
  const bool safe = !job_id.empty() && job_id.size() <= 64 &&
                    job_id.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.") ==
                        std::string_view::npos;
  if (safe) return std::string(job_id);
  std::uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a
  for (const char c : job_id) hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(hash));
  return std::string("h") + text;
}

}  // namespace tpcomm::detail
