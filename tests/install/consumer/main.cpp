// A program outside the tpcomm tree, built against an installed tpcomm.
#include <tpcomm/tpcomm.hpp>

#include <cstdio>
#include <vector>

int main() {
  auto comm = tpcomm::Communicator::from_env();
  std::vector<float> x(1000, static_cast<float>(comm.rank() + 1));
  std::vector<float> y(x.size());
  comm.all_reduce<float>(x, y, tpcomm::ReduceOp::sum);
  const float expected = static_cast<float>(comm.world_size() * (comm.world_size() + 1) / 2);
  for (float v : y) {
    if (v != expected) {
      std::fprintf(stderr, "consumer: wrong result %f (expected %f)\n", v, expected);
      return 1;
    }
  }
  return 0;
}
