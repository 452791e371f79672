/* sdk_functions.c: checks the SDK's memory functions and allocator from inside the jail.
 * Writes "sdk ok\n", or "sdk FAIL <check>\n" for the first check that fails. */
#include "cpushare.h"

static int report(const char *check)
{
	size_t n = 0;
	while (check[n])
		n++;
	cs_write_all("sdk FAIL ", 9);
	cs_write_all(check, n);
	cs_write_all("\n", 1);
	return 1;
}

int main(void)
{
	unsigned char *a = cs_alloc(100);
	unsigned char *b = cs_alloc(1);
	if (!a || !b || ((unsigned long)a & 15) || ((unsigned long)b & 15))
		return report("alloc-aligned");
	for (int i = 0; i < 100; i++)
		if (a[i])
			return report("alloc-zeroed");
	for (int i = 0; i < 100; i++)
		a[i] = (unsigned char)i;
	memmove(a + 10, a, 50); /* forward overlap: copies backwards */
	for (int i = 0; i < 50; i++)
		if (a[10 + i] != i)
			return report("memmove-up");
	for (int i = 0; i < 100; i++)
		a[i] = (unsigned char)i;
	memmove(a, a + 10, 50); /* backward overlap */
	for (int i = 0; i < 50; i++)
		if (a[i] != i + 10)
			return report("memmove-down");
	memset(a, 0xab, 33);
	if (a[0] != 0xab || a[32] != 0xab || a[33] != 33 + 10)
		return report("memset");
	unsigned char c[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, d[8];
	memcpy(d, c, 8);
	if (memcmp(c, d, 8) != 0 || d[7] != 8)
		return report("memcpy");
	d[3] = 0;
	if (memcmp(c, d, 8) <= 0 || memcmp(d, c, 8) >= 0)
		return report("memcmp");
	if (cs_alloc((size_t)1 << 40) != 0 || cs_alloc((size_t)-1) != 0)
		return report("alloc-exhausted");
	if (!cs_alloc(1 << 20))
		return report("alloc-after-refusal");
	cs_write_all("sdk ok\n", 7);
	return 0;
}
