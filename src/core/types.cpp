// Names and sizes of data types and reduction operators.
#include <array>
#include <string>

#include "core/error.hpp"
#include "tpcomm/tpcomm.hpp"

namespace tpcomm {
namespace {

struct DataTypeInfo {
  DataType dtype;
  std::string_view name;
  std::size_t size;
};

constexpr std::array<DataTypeInfo, 8> kDataTypes{{
    {DataType::f32, "f32", 4},
    {DataType::f64, "f64", 8},
    {DataType::f16, "f16", 2},
    {DataType::bf16, "bf16", 2},
    {DataType::i8, "i8", 1},
    {DataType::u8, "u8", 1},
    {DataType::i32, "i32", 4},
    {DataType::i64, "i64", 8},
}};

constexpr std::array<std::string_view, 5> kReduceOpNames{"sum", "prod", "min", "max", "avg"};

const DataTypeInfo& info(DataType dtype) {
  const auto index = static_cast<std::size_t>(dtype);
  if (index >= kDataTypes.size()) {
    detail::fail(ErrorCode::invalid_argument,
                 "unknown dtype value " + std::to_string(static_cast<int>(dtype)) +
                     " (expected 0..7: f32, f64, f16, bf16, i8, u8, i32, i64)");
  }
  return kDataTypes[index];
}

}  // namespace

std::size_t dtype_size(DataType dtype) { return info(dtype).size; }
std::string_view dtype_name(DataType dtype) { return info(dtype).name; }

std::string_view redop_name(ReduceOp op) {
  const auto index = static_cast<std::size_t>(op);
  if (index >= kReduceOpNames.size()) {
    detail::fail(ErrorCode::invalid_argument,
                 "unknown reduce op value " + std::to_string(static_cast<int>(op)) +
                     " (expected 0..4: sum, prod, min, max, avg)");
  }
  return kReduceOpNames[index];
}

DataType parse_dtype(std::string_view name) {
  for (const auto& entry : kDataTypes) {
    if (entry.name == name) return entry.dtype;
  }
  detail::fail(ErrorCode::invalid_argument, "unknown dtype '" + std::string(name) +
                                                "' (expected f32, f64, f16, bf16, i8, u8, i32, i64)");
}

ReduceOp parse_redop(std::string_view name) {
  for (std::size_t i = 0; i < kReduceOpNames.size(); ++i) {
    if (kReduceOpNames[i] == name) return static_cast<ReduceOp>(i);
  }
  detail::fail(ErrorCode::invalid_argument,
               "unknown reduce op '" + std::string(name) + "' (expected sum, prod, min, max, avg)");
}

}  // namespace tpcomm
