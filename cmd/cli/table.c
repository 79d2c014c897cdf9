/* table.c - aligned columns (table.h). */
#include "table.h"
#include "cli.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_table_take(cli_table *t, char *s)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 64;
		t->cells = cli_xrealloc(t->cells, t->cap, sizeof *t->cells);
	}
	t->cells[t->n++] = s;
}

void cli_table_add(cli_table *t, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		cli_die(EX_SOFTWARE_, "out of memory");
	va_end(ap);
	cli_table_take(t, s);
}

void cli_table_num(cli_table *t, int64_t v)
{
	if (v < 0)
		cli_table_add(t, "-");
	else
		cli_table_add(t, "%" PRId64, v);
}

void cli_table_init(cli_table *t, ...)
{
	va_list ap;
	const char *h;

	*t = (cli_table){ 0 };
	va_start(ap, t);
	while ((h = va_arg(ap, const char *))) {
		cli_table_add(t, "%s", h);
		t->ncols++;
	}
	va_end(ap);
}

size_t cli_table_rows(const cli_table *t)
{
	return t->n / t->ncols - 1;
}

void cli_table_free(cli_table *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->cells[i]);
	free(t->cells);
	*t = (cli_table){ 0 };
}

void cli_table_flush(cli_table *t, bool heading)
{
	size_t *w = cli_xcalloc(t->ncols, sizeof *w);

	for (size_t i = 0; i < t->n; i++) {
		size_t len = strlen(t->cells[i]);
		if (len > w[i % t->ncols])
			w[i % t->ncols] = len;
	}
	for (size_t i = heading ? 0 : t->ncols; i < t->n; i++) {
		size_t c = i % t->ncols;
		if (c + 1 == t->ncols)
			printf("%s\n", t->cells[i]);
		else
			printf("%-*s  ", (int)w[c], t->cells[i]);
	}
	free(w);
	cli_table_free(t);
}
