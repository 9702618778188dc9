// `trainer prepare`: placeholder registration until the prepare work lands; hidden from --help.
#include "commands.hpp"

#include <iostream>

namespace loom::cli {

Command addPrepareCommand(CLI::App& parent) {
  Command c;
  c.app = parent.add_subcommand("prepare", "");  // empty description: not listed in --help
  c.app->group("");
  c.run = [] {
    std::cerr << "trainer prepare: not in this build yet" << std::endl;
    return 1;
  };
  return c;
}

}  // namespace loom::cli
