// llama.cpp's own routing of a GGUF file, as a JSON file `bench/llama_routing.py` compares with
// moescope's trace of the same file.
//
// Why a program of our own: llama.cpp exposes the experts it picks only through the graph's
// evaluation callback (`cb_eval`), where the node `ffn_moe_topk-<block>` holds the ids
// `[n_expert_used, n_tokens]` (int32) after top-k; `llama-eval-callback` prints a few elements of
// every node, not whole tensors. Built by `bench/llama_routing.py` against a llama.cpp build
// (public `llama.h` / `ggml-backend.h` API only).
//
// Usage: llama_routing MODEL.gguf IDS OUT.json THREADS   (IDS: comma-separated token ids)

#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

const char kTopkNode[] = "ffn_moe_topk-";

// Block index -> [token][slot] expert ids, filled by the callback.
using Routing = std::map<int, std::vector<std::vector<int32_t>>>;

bool on_node(ggml_tensor * node, bool ask, void * user_data) {
    const bool is_topk = std::strncmp(node->name, kTopkNode, sizeof(kTopkNode) - 1) == 0;
    if (ask) {
        return is_topk;  // only these nodes' data is needed
    }
    if (!is_topk || node->type != GGML_TYPE_I32) {
        return true;
    }
    const int block = std::atoi(node->name + sizeof(kTopkNode) - 1);
    const int64_t slots = node->ne[0];
    const int64_t tokens = node->ne[1];
    std::vector<int32_t> ids(static_cast<size_t>(slots * tokens));
    // Rows may be views with padding: read row by row through the byte strides.
    for (int64_t t = 0; t < tokens; ++t) {
        ggml_backend_tensor_get(node, ids.data() + t * slots, t * node->nb[1], slots * sizeof(int32_t));
    }
    auto & rows = (*static_cast<Routing *>(user_data))[block];
    rows.clear();
    for (int64_t t = 0; t < tokens; ++t) {
        rows.emplace_back(ids.begin() + t * slots, ids.begin() + (t + 1) * slots);
    }
    return true;
}

void quiet(ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR) {
        std::fputs(text, stderr);
    }
}

}  // namespace

int main(int argc, char ** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: %s MODEL.gguf IDS OUT.json THREADS\n", argv[0]);
        return 2;
    }
    std::vector<llama_token> tokens;
    {
        std::stringstream list(argv[2]);
        std::string id;
        while (std::getline(list, id, ',')) {
            tokens.push_back(std::atoi(id.c_str()));
        }
    }
    if (tokens.empty()) {
        std::fprintf(stderr, "no token ids\n");
        return 2;
    }
    llama_log_set(quiet, nullptr);
    llama_backend_init();

    llama_model_params model_params = llama_model_default_params();
    model_params.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(argv[1], model_params);
    if (model == nullptr) {
        std::fprintf(stderr, "%s: llama.cpp could not load it\n", argv[1]);
        return 1;
    }
    Routing routing;
    llama_context_params ctx_params = llama_context_default_params();
    ctx_params.n_ctx = static_cast<uint32_t>(tokens.size()) + 16;
    ctx_params.n_batch = static_cast<uint32_t>(tokens.size());
    ctx_params.n_ubatch = static_cast<uint32_t>(tokens.size());
    ctx_params.n_threads = ctx_params.n_threads_batch = std::atoi(argv[4]);
    ctx_params.cb_eval = on_node;
    ctx_params.cb_eval_user_data = &routing;
    llama_context * ctx = llama_init_from_model(model, ctx_params);
    if (ctx == nullptr) {
        std::fprintf(stderr, "%s: no llama.cpp context\n", argv[1]);
        return 1;
    }
    // Outputs at every position: llama.cpp runs the last block's FFN only on the rows it outputs.
    llama_batch batch = llama_batch_init(static_cast<int32_t>(tokens.size()), 0, 1);
    for (size_t i = 0; i < tokens.size(); ++i) {
        batch.token[i] = tokens[i];
        batch.pos[i] = static_cast<llama_pos>(i);
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = static_cast<int32_t>(tokens.size());
    const int32_t status = llama_decode(ctx, batch);
    llama_batch_free(batch);
    if (status != 0) {
        std::fprintf(stderr, "%s: llama_decode failed\n", argv[1]);
        return 1;
    }

    FILE * out = std::fopen(argv[3], "w");
    if (out == nullptr) {
        std::fprintf(stderr, "%s: cannot write\n", argv[3]);
        return 1;
    }
    std::fprintf(out, "{\"input_ids\": [");
    for (size_t i = 0; i < tokens.size(); ++i) {
        std::fprintf(out, "%s%d", i ? ", " : "", tokens[i]);
    }
    std::fprintf(out, "],\n \"moe_layers\": [");
    bool first_block = true;
    for (const auto & [block, rows] : routing) {
        std::fprintf(out, "%s\n  {\"layer\": %d, \"topk_ids\": [", first_block ? "" : ",", block);
        for (size_t t = 0; t < rows.size(); ++t) {
            std::fprintf(out, "%s[", t ? ", " : "");
            for (size_t s = 0; s < rows[t].size(); ++s) {
                std::fprintf(out, "%s%d", s ? ", " : "", rows[t][s]);
            }
            std::fprintf(out, "]");
        }
        std::fprintf(out, "]}");
        first_block = false;
    }
    std::fprintf(out, "\n ]}\n");
    std::fclose(out);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
