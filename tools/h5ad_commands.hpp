// SPDX-License-Identifier: MIT
// SPDX-FileCopyrightText: sakura-cpp authors
// sakura-train's subcommands beside training: `convert` and `synth` (see h5ad_commands.cpp).
#pragma once

#include <stdexcept>
#include <string>

namespace sakura::tools {

/// Bad command-line usage (exit status 2).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

int convert_command(int argc, char** argv);
int synth_command(int argc, char** argv);

/// Runs subcommand `name` ("convert" or "synth") on the arguments after it; returns the exit status
/// (0 done, 1 failed with a message on stderr, 2 bad usage), or -1 when `name` is no subcommand.
int run_subcommand(const std::string& name, int argc, char** argv);

}  // namespace sakura::tools
