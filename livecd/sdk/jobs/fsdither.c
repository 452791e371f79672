/*
 * fsdither.c: Floyd-Steinberg error diffusion, the libcaca group's reference job.
 *
 * Input: a binary PGM (P5, maxval 1..255). Output: the black-and-white halftone as a
 * binary PBM whose comment line carries the quality figure,
 *
 *   P4\n# mse=M.MMMM\nWIDTH HEIGHT\n<rows of pixels, one bit each>
 *
 * PBM is the bilevel format: eight pixels a byte, the leftmost in the most significant
 * bit, 1 for black; each row ends on a whole byte (the last one's spare bits are 0). It is
 * an eighth of a PGM's bytes, and every byte a result carries costs the seller's courier.
 * M.MMMM (truncated to four decimals) is the mean squared error, in grey levels,
 * between the halftone blurred by the 3x3 kernel [1 2 1; 2 4 2; 1 2 1]/16 (edges
 * clamped) and the original. All arithmetic is integer, so livecd/sdk/dither.py
 * reproduces the output bit for bit. Bad input: one line on fd 1 and exit status 2.
 */
#include "cpushare.h"

typedef unsigned long u64;

#define MAX_SIDE 65535UL
#define MAX_PIXELS (1UL << 28)

struct image {
	u64 width, height;
	unsigned char *pixels; /* width * height grey levels scaled to 0..255 */
};

static int fail(const char *reason)
{
	size_t n = 0;
	while (reason[n])
		n++;
	cs_write_all("fsdither: ", 10);
	cs_write_all(reason, n);
	cs_write_all("\n", 1);
	return 2;
}

static int is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Skips the whitespace and comments before a header field; there must be some. */
static int skip_separator(const unsigned char *data, size_t size, size_t *pos)
{
	size_t start = *pos;
	while (*pos < size) {
		if (is_space(data[*pos])) {
			(*pos)++;
		} else if (data[*pos] == '#') {
			while (*pos < size && data[*pos] != '\n' && data[*pos] != '\r')
				(*pos)++;
		} else {
			break;
		}
	}
	return *pos > start;
}

static int read_field(const unsigned char *data, size_t size, size_t *pos, u64 max, u64 *value)
{
	if (!skip_separator(data, size, pos) || *pos >= size || data[*pos] < '0' ||
	    data[*pos] > '9')
		return 0;
	*value = 0;
	while (*pos < size && data[*pos] >= '0' && data[*pos] <= '9') {
		*value = *value * 10 + (u64)(data[(*pos)++] - '0');
		if (*value > max)
			return 0;
	}
	return 1;
}

static const char *parse_pgm(unsigned char *data, size_t size, struct image *img)
{
	size_t pos = 2;
	u64 maxval;
	if (size < 2 || data[0] != 'P' || data[1] != '5')
		return "input is not a binary PGM (P5)";
	if (!read_field(data, size, &pos, MAX_SIDE, &img->width) ||
	    !read_field(data, size, &pos, MAX_SIDE, &img->height) ||
	    !read_field(data, size, &pos, 255, &maxval))
		return "bad PGM header (width, height 1..65535, maxval 1..255)";
	if (img->width == 0 || img->height == 0 || maxval == 0)
		return "bad PGM header (width, height 1..65535, maxval 1..255)";
	if (img->width * img->height > MAX_PIXELS)
		return "image too large (at most 2^28 pixels)";
	if (pos >= size || !is_space(data[pos]))
		return "bad PGM header (no whitespace after maxval)";
	pos++;
	u64 count = img->width * img->height;
	if (size - pos < count)
		return "PGM raster is shorter than width * height";
	img->pixels = data + pos;
	if (maxval != 255)
		for (u64 i = 0; i < count; i++) {
			u64 v = img->pixels[i] > maxval ? maxval : img->pixels[i];
			img->pixels[i] = (unsigned char)((v * 255 + maxval / 2) / maxval);
		}
	return 0;
}

/* Errors are kept in sixteenths of a grey level; shares are floored (>> of a negative
 * int is an arithmetic shift in GCC and in Python alike). */
static void dither(const struct image *img, unsigned char *out, int *cur, int *next)
{
	u64 w = img->width;
	for (u64 y = 0; y < img->height; y++) {
		const unsigned char *row = img->pixels + y * w;
		unsigned char *dst = out + y * w;
		memset(next, 0, (w + 2) * sizeof *next);
		for (u64 x = 0; x < w; x++) {
			int v = (row[x] << 4) + cur[x + 1];
			int level = v >= 128 << 4 ? 255 : 0;
			int e = v - (level << 4);
			dst[x] = (unsigned char)level;
			cur[x + 2] += (e * 7) >> 4;
			next[x] += (e * 3) >> 4;
			next[x + 1] += (e * 5) >> 4;
			next[x + 2] += e >> 4;
		}
		int *swap = cur;
		cur = next;
		next = swap;
	}
}

/* Sum over pixels of (16 * blurred halftone - 16 * original)^2. */
static u64 blurred_error(const struct image *img, const unsigned char *halftone)
{
	u64 w = img->width, h = img->height, sum = 0;
	for (u64 y = 0; y < h; y++) {
		const unsigned char *up = halftone + (y ? y - 1 : 0) * w;
		const unsigned char *mid = halftone + y * w;
		const unsigned char *down = halftone + (y + 1 < h ? y + 1 : y) * w;
		const unsigned char *orig = img->pixels + y * w;
		for (u64 x = 0; x < w; x++) {
			u64 l = x ? x - 1 : 0, r = x + 1 < w ? x + 1 : x;
			long b = up[l] + 2 * up[x] + up[r] + 2 * mid[l] + 4 * mid[x] + 2 * mid[r] +
				 down[l] + 2 * down[x] + down[r];
			long d = b - 16L * orig[x];
			sum += (u64)(d * d);
		}
	}
	return sum;
}

/* Eight halftone pixels (each 0 or 255) as one PBM byte, the first in the top bit, 1 for
 * black, in a few instructions: the pixels read as one little-endian word (one load, the
 * builtin even in a freestanding build) keep bit 8i for pixel i once inverted and masked;
 * the multiplier moves bit 8i to bit 63 - i, and no two of its partial products share a
 * bit, so nothing carries into the top byte. */
static unsigned pack8(const unsigned char *pixels)
{
	u64 word;
	__builtin_memcpy(&word, pixels, sizeof word);
	return (unsigned)(((~word & 0x0101010101010101UL) * 0x8040201008040201UL) >> 56);
}

/* The halftone's rows as PBM's bits, in place: packed byte k of row y lands at
 * y * stride + k, never past pixel y * w + 8k, the first of the eight it is made of, so
 * no pixel is overwritten before it is read and no second buffer is needed. Returns
 * the packed size, height * stride. */
static u64 pack_rows(const struct image *img, unsigned char *halftone)
{
	u64 w = img->width, whole = w / 8, stride = (w + 7) / 8;
	for (u64 y = 0; y < img->height; y++) {
		const unsigned char *row = halftone + y * w;
		unsigned char *dst = halftone + y * stride;
		for (u64 k = 0; k < whole; k++)
			dst[k] = (unsigned char)pack8(row + 8 * k);
		if (whole < stride) {
			unsigned bits = 0;
			for (u64 x = 8 * whole; x < 8 * whole + 8; x++)
				bits = bits << 1 | (x < w && row[x] == 0);
			dst[whole] = (unsigned char)bits;
		}
	}
	return img->height * stride;
}

static size_t put_number(char *buf, size_t at, u64 n, int min_digits)
{
	char digits[24];
	int count = 0;
	do {
		digits[count++] = (char)('0' + n % 10);
		n /= 10;
	} while (n || count < min_digits);
	while (count)
		buf[at++] = digits[--count];
	return at;
}

static size_t put_text(char *buf, size_t at, const char *text)
{
	while (*text)
		buf[at++] = *text++;
	return at;
}

/* "P4\n# mse=M.MMMM\nW H\n": the mean of sum / 256 (sixteenths squared) over the
 * pixels, by long division, truncated to four decimals. */
static size_t format_header(char *buf, const struct image *img, u64 sum)
{
	u64 divisor = 256 * img->width * img->height, rest = sum % divisor, fraction = 0;
	for (int i = 0; i < 4; i++) {
		rest *= 10;
		fraction = fraction * 10 + rest / divisor;
		rest %= divisor;
	}
	size_t n = put_text(buf, 0, "P4\n# mse=");
	n = put_number(buf, n, sum / divisor, 1);
	n = put_text(buf, n, ".");
	n = put_number(buf, n, fraction, 4);
	n = put_text(buf, n, "\n");
	n = put_number(buf, n, img->width, 1);
	n = put_text(buf, n, " ");
	n = put_number(buf, n, img->height, 1);
	return put_text(buf, n, "\n");
}

int main(void)
{
	size_t size;
	unsigned char *data = cs_read_input(&size);
	if (!data)
		return fail("cannot read the input (larger than the memory limit?)");
	struct image img;
	const char *problem = parse_pgm(data, size, &img);
	if (problem)
		return fail(problem);
	u64 count = img.width * img.height;
	unsigned char *out = cs_alloc(count);
	int *cur = cs_alloc((img.width + 2) * sizeof(int));
	int *next = cs_alloc((img.width + 2) * sizeof(int));
	if (!out || !cur || !next)
		return fail("not enough memory for this image");
	dither(&img, out, cur, next);
	char header[96];
	size_t n = format_header(header, &img, blurred_error(&img, out));
	u64 packed = pack_rows(&img, out);
	if (cs_write_all(header, n) != 0 || cs_write_all(out, packed) != 0)
		return fail("cannot write the output");
	return 0;
}
