/* A program without rseq sections: oncpu-inspect must say so, exit 0. */
#include <stdio.h>

int main(void)
{
	puts("no rseq here");
	return 0;
}
