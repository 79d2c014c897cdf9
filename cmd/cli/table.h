/*
 * table.h - aligned columns for people (mq-offset, mq-replay): cells are
 * collected row by row, then printed, each column as wide as its widest
 * cell, two spaces apart. Out of memory is fatal (cli_die).
 */
#ifndef MQ_CLI_TABLE_H
#define MQ_CLI_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cli_table {
	size_t ncols;
	char **cells;           /* the headings, then the rows */
	size_t n, cap;
} cli_table;

/* Start a table with these column headings (NULL-terminated). */
void cli_table_init(cli_table *t, ...);
/* The next cell, formatted. */
void cli_table_add(cli_table *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The next cell: s, malloc'd, which the table frees. */
void cli_table_take(cli_table *t, char *s);
/* The next cell: a number, or "-" when it is unknown (negative). */
void cli_table_num(cli_table *t, int64_t v);
/* Rows so far. */
size_t cli_table_rows(const cli_table *t);
/* Print (skipping the headings if !heading) and free. */
void cli_table_flush(cli_table *t, bool heading);
void cli_table_free(cli_table *t);

#endif
