// The processes a command runs in, the way PyTorch users start them: torchrun (or a scheduler such
// as Slurm) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, and the processes meet
// over c10d (a TCPStore rendezvous, Gloo collectives). Without those variables there is one process
// and every collective is a copy.
#pragma once

#include "rdprune/layering.h"
RDPRUNE_LAYER(1, "dist");

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

namespace rdprune {

// Where a process stands among the others, as its launcher described it.
struct ProcessPlace {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  bool agent_store = false;  // torchrun's agent hosts the store (TORCHELASTIC_USE_AGENT_STORE)
  std::string restart_count = "0";
};

// The place described by `env` (the launcher's variables by name). One process when WORLD_SIZE is
// absent; UsageError naming the variable when one is missing or out of range.
ProcessPlace place_from(const std::map<std::string, std::string>& env);
// The same from this process's environment.
ProcessPlace place_from_environment();

class ProcessGroup {
 public:
  // Joins the other processes of `place` (one process: nothing to join). Every collective, and the
  // rendezvous itself, gives up after `timeout_seconds` with an Error naming what it waited for.
  ProcessGroup(const ProcessPlace& place, double timeout_seconds);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return place_.rank; }
  int size() const { return place_.world_size; }
  bool is_root() const { return place_.rank == 0; }
  const ProcessPlace& place() const { return place_; }

  // Every process's `values` (a CPU tensor) added up, in every process.
  torch::Tensor sum(const torch::Tensor& values);
  // Starts adding up every process's `values` (contiguous, on the CPU or, in a CUDA build, a GPU)
  // into `values` itself, and returns at once; the sum is there after the returned call. Every
  // process must start its sums in the same order.
  std::function<void()> start_sum(torch::Tensor values);
  // Every process's `values` (a 1-d CPU tensor, of any length), by rank, in every process.
  std::vector<torch::Tensor> gather(const torch::Tensor& values);
  // Every process's `text`, by rank, in every process.
  std::vector<std::string> exchange(const std::string& text);

 private:
  struct Impl;
  ProcessPlace place_;
  std::unique_ptr<Impl> impl_;
};

// The part of `count` items that process `rank` of `size` takes: [begin, end), contiguous, in rank
// order, sizes differing by at most one.
std::pair<int64_t, int64_t> shard_of(int64_t count, int rank, int size);

}  // namespace rdprune
