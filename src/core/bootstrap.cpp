// Communicator::from_env: who am I, how many are we and which job is this,
// from the variables set by tpcomm-run, torchrun or Open MPI's mpirun.
#include <cerrno>
#include <cstdlib>
#include <string>

#include "core/error.hpp"
#include "tpcomm/tpcomm.hpp"
#ifdef TPCOMM_HAVE_MPI
#include "mpi/mpi_bootstrap.hpp"  // ranks on several nodes under mpirun
#endif

namespace tpcomm {
namespace {

const char* env(const char* name) {
  const char* value = std::getenv(name);
  return (value != nullptr && *value != '\0') ? value : nullptr;
}

int env_int(const char* name) {
  const char* text = env(name);
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < 0 || value > 1 << 20) {
    detail::fail(ErrorCode::invalid_argument,
                 std::string(name) + ": expected a non-negative integer, got '" + text + "'");
  }
  return static_cast<int>(value);
}

int env_int_or(const char* name, int fallback) { return env(name) != nullptr ? env_int(name) : fallback; }

struct Placement {
  int rank = 0;
  int world_size = 0;
  std::string job_id;
};

void require_single_node(const char* launcher, int world_size, int local_world_size) {
  if (local_world_size != world_size) {
    detail::fail(ErrorCode::invalid_argument,
                 std::string(launcher) + " started " + std::to_string(world_size) + " ranks, only " +
                     std::to_string(local_world_size) +
                     " of them on this machine; this build of tpcomm connects ranks of one machine only");
  }
}

Placement placement_from_env() {
  if (env("TPCOMM_RANK") != nullptr || env("TPCOMM_WORLD_SIZE") != nullptr) {
    if (env("TPCOMM_RANK") == nullptr || env("TPCOMM_WORLD_SIZE") == nullptr || env("TPCOMM_JOB_ID") == nullptr) {
      detail::fail(ErrorCode::invalid_argument,
                   "TPCOMM_RANK, TPCOMM_WORLD_SIZE and TPCOMM_JOB_ID must all be set (tpcomm-run sets them)");
    }
    return {env_int("TPCOMM_RANK"), env_int("TPCOMM_WORLD_SIZE"), env("TPCOMM_JOB_ID")};
  }
  if (env("RANK") != nullptr && env("WORLD_SIZE") != nullptr) {
    // torchrun: the shared-memory group is this machine's ranks.
    const int world = env_int("WORLD_SIZE");
    const int local_world = env_int_or("LOCAL_WORLD_SIZE", world);
    require_single_node("torchrun", world, local_world);
    const int local_rank = env_int_or("LOCAL_RANK", env_int("RANK"));
    std::string job = "torch";
    for (const char* name : {"TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT"}) {
      job += '|';
      job += env(name) != nullptr ? env(name) : "";
    }
    if (env("TORCHELASTIC_RUN_ID") == nullptr && env("MASTER_PORT") == nullptr) {
      detail::fail(ErrorCode::invalid_argument,
                   "RANK and WORLD_SIZE are set but neither TORCHELASTIC_RUN_ID nor MASTER_PORT identifies the job");
    }
    return {local_rank, local_world, job};
  }
  if (env("OMPI_COMM_WORLD_RANK") != nullptr && env("OMPI_COMM_WORLD_SIZE") != nullptr) {
    const int world = env_int("OMPI_COMM_WORLD_SIZE");
    const int local_world = env_int_or("OMPI_COMM_WORLD_LOCAL_SIZE", world);
    require_single_node("mpirun", world, local_world);
    const int local_rank = env_int_or("OMPI_COMM_WORLD_LOCAL_RANK", env_int("OMPI_COMM_WORLD_RANK"));
    // mpirun gives every job a distinct namespace / job id.
    std::string job = "ompi";
    for (const char* name : {"PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "OMPI_MCA_orte_ess_jobid",
                             "OMPI_MCA_orte_hnp_uri", "PMIX_SERVER_URI3", "PMIX_SERVER_URI2"}) {
      if (env(name) != nullptr) {
        job += '|';
        job += env(name);
      }
    }
    if (job == "ompi") {
      detail::fail(ErrorCode::invalid_argument, "Open MPI's rank variables are set but no job identifier "
                                                "(PMIX_NAMESPACE or OMPI_MCA_ess_base_jobid) was found");
    }
    return {local_rank, local_world, job};
  }
  detail::fail(ErrorCode::invalid_argument,
               "no launcher environment found: run under tpcomm-run (TPCOMM_RANK, TPCOMM_WORLD_SIZE, TPCOMM_JOB_ID), "
               "torchrun (RANK, WORLD_SIZE, ...) or mpirun (OMPI_COMM_WORLD_RANK, ...)");
}

}  // namespace

Communicator Communicator::from_env(const CommOptions& options) {
#ifdef TPCOMM_HAVE_MPI
  if (auto communicator = detail::communicator_from_mpi_launch(options)) return std::move(*communicator);
#endif
  const Placement placement = placement_from_env();
  return create(placement.rank, placement.world_size, placement.job_id, options);
}

}  // namespace tpcomm
