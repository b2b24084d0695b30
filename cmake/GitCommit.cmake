# The commit the binary was built from, for `mmb --version` and manifest.json.
# Regenerated at every build (not only at configure), rewritten only when it changes.
set(MMB_GIT_COMMIT_CPP "${CMAKE_BINARY_DIR}/generated/git_commit.cpp")
add_custom_target(mmb_git_commit
  COMMAND ${CMAKE_COMMAND} -DSRC=${CMAKE_SOURCE_DIR} -DOUT=${MMB_GIT_COMMIT_CPP}
          -P ${CMAKE_SOURCE_DIR}/cmake/WriteGitCommit.cmake
  BYPRODUCTS ${MMB_GIT_COMMIT_CPP}
  COMMENT "mmb: git commit")
