/* The zotune subcommands; each returns a process exit status (0 ok, 1 failure, 2 usage). */
#ifndef ZT_CLI_COMMANDS_H
#define ZT_CLI_COMMANDS_H

int zt_cmd_info(int argc, char **argv);
int zt_cmd_score(int argc, char **argv);
int zt_cmd_grad(int argc, char **argv);
int zt_cmd_bench(int argc, char **argv);
int zt_cmd_train(int argc, char **argv);
int zt_cmd_replay(int argc, char **argv);
int zt_cmd_eval(int argc, char **argv);
int zt_cmd_convert(int argc, char **argv);
int zt_cmd_merge(int argc, char **argv);

/* Prints "zotune <command>: <status name>: <last error>" to stderr and returns 1. */
int zt_cli_report(const char *command, int status);

#endif
