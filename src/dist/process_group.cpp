#include "rdprune/process_group.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <future>
#include <thread>
#include <utility>

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "rdprune/error.h"
#include "rdprune/torch_reason.h"

extern char** environ;

namespace rdprune {
namespace {

std::string text_variable(const std::map<std::string, std::string>& env, const std::string& name) {
  const auto found = env.find(name);
  if (found == env.end() || found->second.empty())
    throw UsageError(name +
                     ": not set; the launcher sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT together");
  return found->second;
}

int whole_variable(const std::map<std::string, std::string>& env, const std::string& name, int low,
                   int high) {
  const std::string text = text_variable(env, name);
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (*end != '\0' || errno != 0 || value < low || value > high) {
    throw UsageError(name + ": expected a whole number in " + std::to_string(low) + ".." +
                     std::to_string(high) + ", got '" + text + "'");
  }
  return static_cast<int>(value);
}

std::string process_name(const ProcessPlace& place) {
  return "rank " + std::to_string(place.rank) + " of " + std::to_string(place.world_size);
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string text = ranks.size() > 1 ? "ranks " : "rank ";
  for (size_t i = 0; i < ranks.size(); ++i) text += (i > 0 ? ", " : "") + std::to_string(ranks[i]);
  return text;
}

// The store client the liveness records go through: its own connection, so that a failed exchange
// leaves it usable; under torchrun, under the agent's prefix.
c10::intrusive_ptr<c10d::Store> liveness_store(const ProcessPlace& place) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(place.master_port);
  options.waitWorkers = false;
  options.timeout = std::chrono::seconds(5);
  c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(place.master_addr, options);
  if (place.agent_store)
    store = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + place.restart_count, store);
  return store;
}

// The store's keys: the question to process `rank`, and its answer.
std::string asked_key(int rank) {
  return "rdprune/asked/" + std::to_string(rank);
}
std::string alive_key(int rank) {
  return "rdprune/alive/" + std::to_string(rank);
}

}  // namespace

// Answers for this process when another asks who is still there: a thread of its own, so that the
// answer comes while this process computes, or waits on the very process that asks. Its one request
// is sent at the start; it touches the store again only once asked: a process stopped in the middle
// of a store request would hold up the store's server.
class Answerer {
 public:
  // `asker`: this process's own liveness client, through which it asks at its end.
  Answerer(const ProcessPlace& place, c10::intrusive_ptr<c10d::Store> asker)
      : rank_(place.rank), asker_(std::move(asker)) {
    c10::intrusive_ptr<c10d::Store> store = liveness_store(place);
    auto finished = std::make_shared<std::promise<void>>();  // outlives this object where left
    done_ = finished->get_future();
    thread_ = std::thread([store, rank = rank_, ending = ending_, finished] {
      try {
        store->wait({asked_key(rank)}, std::chrono::hours(24 * 365));
        if (!*ending) store->set(alive_key(rank), std::vector<uint8_t>{1});
      } catch (const std::exception&) {
        // The store's host ended: no one is left to ask.
      }
      finished->set_value();
    });
  }
  // A process that ends, by its own error or at the end of its work, no longer answers: it asks
  // itself, so that its thread ends without answering (or is left, where the store's host stopped).
  ~Answerer() {
    *ending_ = true;
    try {
      asker_->set(asked_key(rank_), std::vector<uint8_t>{1});
    } catch (const std::exception&) {
      // The store's host ended (then the thread ends too) or stopped answering.
    }
    if (done_.wait_for(std::chrono::seconds(1)) == std::future_status::ready)
      thread_.join();
    else
      thread_.detach();
  }
  Answerer(const Answerer&) = delete;
  Answerer& operator=(const Answerer&) = delete;

 private:
  int rank_;
  c10::intrusive_ptr<c10d::Store> asker_;
  std::shared_ptr<std::atomic<bool>> ending_ = std::make_shared<std::atomic<bool>>(false);
  std::future<void> done_;
  std::thread thread_;
};

// Which process a failed exchange lost. A process whose exchange fails asks every other, through
// the rendezvous store, whether it is still there, and waits a few seconds for their Answerers:
// those that do not answer are the ones lost (ended, by a kill or an error of their own, or
// stopped).
class Liveness {
 public:
  explicit Liveness(const ProcessPlace& place, double wait_seconds)
      : place_(place), wait_(wait_seconds), store_(liveness_store(place)) {}

  const c10::intrusive_ptr<c10d::Store>& store() const { return store_; }

  // Whom a failed exchange lost, e.g. "rank 2 (it ended or stopped answering", or "" when every
  // process answered (one is alive but hung elsewhere).
  std::string lost() {
    std::vector<int> silent;
    try {
      for (int r = 0; r < place_.world_size; ++r) {
        if (r != place_.rank) store_->set(asked_key(r), std::vector<uint8_t>{1});
      }
      store_->set(alive_key(place_.rank), std::vector<uint8_t>{1});
    } catch (const std::exception&) {
      return place_.agent_store || place_.rank == 0 ? "" : "rank 0 (it served the rendezvous and ended";
    }
    try {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_);
      do {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        silent.clear();
        for (int r = 0; r < place_.world_size; ++r) {
          if (r != place_.rank && !store_->check({alive_key(r)})) silent.push_back(r);
        }
      } while (!silent.empty() && std::chrono::steady_clock::now() < deadline);
      // The store's host stays a moment longer, for the others still looking.
      if (place_.rank == 0 && !place_.agent_store) std::this_thread::sleep_for(std::chrono::seconds(1));
    } catch (const std::exception&) {
      // The store's host left after deciding: what was seen last stands.
    }
    if (silent.empty()) return "";
    return rank_list(silent) + (silent.size() > 1 ? " (they" : " (it") + " ended or stopped answering";
  }

 private:
  ProcessPlace place_;
  double wait_;
  c10::intrusive_ptr<c10d::Store> store_;
};

ProcessPlace place_from(const std::map<std::string, std::string>& env) {
  ProcessPlace place;
  if (env.find("WORLD_SIZE") == env.end()) return place;
  place.world_size = whole_variable(env, "WORLD_SIZE", 1, 1 << 20);
  place.rank = whole_variable(env, "RANK", 0, place.world_size - 1);
  place.local_rank = env.count("LOCAL_RANK") ? whole_variable(env, "LOCAL_RANK", 0, place.world_size - 1) : 0;
  if (place.world_size == 1) return place;
  place.master_addr = text_variable(env, "MASTER_ADDR");
  place.master_port = whole_variable(env, "MASTER_PORT", 1, 65535);
  const auto agent = env.find("TORCHELASTIC_USE_AGENT_STORE");
  place.agent_store = agent != env.end() && agent->second == "True";
  const auto restarts = env.find("TORCHELASTIC_RESTART_COUNT");
  if (restarts != env.end()) place.restart_count = restarts->second;
  return place;
}

ProcessPlace place_from_environment() {
  std::map<std::string, std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string text = *entry;
    const size_t equals = text.find('=');
    if (equals != std::string::npos) env[text.substr(0, equals)] = text.substr(equals + 1);
  }
  return place_from(env);
}

// What a failed exchange tells this process, naming the process it lost where `liveness` tells.
Error lost_error(const ProcessPlace& place, Liveness& liveness, const std::exception& e) {
  const std::string who = liveness.lost();
  return Error(process_name(place) + ": lost " +
               (who.empty() ? "the other processes (one ended or stopped answering" : who) + ": " +
               torch_reason(e) + ")");
}

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  std::shared_ptr<Liveness> liveness;  // shared with the waits start_sum returns
  std::unique_ptr<Answerer> answerer;  // last: ended while the store's host is still there
};

ProcessGroup::ProcessGroup(const ProcessPlace& place, double timeout_seconds) : place_(place) {
  if (place.world_size == 1) return;
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000));
  try {
    // As PyTorch's env:// rendezvous does: under torchrun the agent hosts the store and every
    // process is a client under the prefix of the agent's attempt; otherwise rank 0 hosts it.
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(place.master_port);
    store_options.isServer = place.rank == 0 && !place.agent_store;
    store_options.numWorkers = place.world_size;
    store_options.multiTenant = true;
    store_options.timeout = timeout;
    c10::intrusive_ptr<c10d::Store> store =
        c10::make_intrusive<c10d::TCPStore>(place.master_addr, store_options);
    if (place.agent_store)
      store = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + place.restart_count, store);
    auto options = c10d::ProcessGroupGloo::Options::create();
    options->timeout = timeout;
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    impl_ = std::make_unique<Impl>();
    impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, place.rank, place.world_size, options);
    // Every Answerer answers within moments of being asked; 5 s covers a loaded machine.
    impl_->liveness = std::make_shared<Liveness>(place, std::min(5.0, timeout_seconds));
    impl_->answerer = std::make_unique<Answerer>(place, impl_->liveness->store());
  } catch (const std::exception& e) {
    throw Error(process_name(place) + ": cannot join the other processes at " + place.master_addr + ":" +
                std::to_string(place.master_port) + " (" + torch_reason(e) + ")");
  }
}

ProcessGroup::~ProcessGroup() = default;

torch::Tensor ProcessGroup::sum(const torch::Tensor& values) {
  torch::Tensor total = values.contiguous().clone();
  start_sum(total)();
  return total;
}

std::function<void()> ProcessGroup::start_sum(torch::Tensor values) {
  if (!impl_) return [] {};
  c10::intrusive_ptr<c10d::Work> work;
  try {
    std::vector<torch::Tensor> tensors = {std::move(values)};
    work = impl_->group->allreduce(tensors);
  } catch (const std::exception& e) {
    throw lost_error(place_, *impl_->liveness, e);
  }
  return [work, place = place_, liveness = impl_->liveness] {
    try {
      work->wait();
    } catch (const std::exception& e) {
      throw lost_error(place, *liveness, e);
    }
  };
}

std::vector<torch::Tensor> ProcessGroup::gather(const torch::Tensor& values) {
  if (!impl_) return {values.reshape({-1}).clone()};
  // Lengths first, then every part padded to the longest.
  const torch::Tensor lengths =
      sum(torch::zeros({size()}, torch::kInt64).index_put_({rank()}, values.numel()));
  const int64_t longest = lengths.max().item<int64_t>();
  torch::Tensor padded = torch::zeros({size(), longest}, values.options());
  padded[rank()].narrow(0, 0, values.numel()).copy_(values.reshape({-1}));
  const torch::Tensor all = sum(padded);
  std::vector<torch::Tensor> parts;
  for (int r = 0; r < size(); ++r) parts.push_back(all[r].narrow(0, 0, lengths[r].item<int64_t>()));
  return parts;
}

std::vector<std::string> ProcessGroup::exchange(const std::string& text) {
  const std::vector<torch::Tensor> parts = gather(
      torch::from_blob(const_cast<char*>(text.data()), {static_cast<int64_t>(text.size())}, torch::kUInt8));
  std::vector<std::string> texts;
  for (const torch::Tensor& part : parts) {
    const torch::Tensor bytes = part.contiguous();
    const auto* data = reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>());
    texts.emplace_back(data, static_cast<size_t>(bytes.numel()));
  }
  return texts;
}

std::pair<int64_t, int64_t> shard_of(int64_t count, int rank, int size) {
  const int64_t base = count / size;
  const int64_t extra = count % size;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

}  // namespace rdprune
