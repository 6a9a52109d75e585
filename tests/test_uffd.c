/* common/uffd.c, the userfaultfd helpers of dirty/'s trackers and the
 * post-copy destination: open with and without features, register every
 * region of a guest with the ioctls a caller needs, refuse (and leave
 * nothing registered) when another userfaultfd holds a region, and
 * write-protect a whole guest. */
#include <sys/mman.h>
#include <unistd.h>

#include "common/uffd.h"
#include "testlib.h"

int main(void)
{
    int fd = uffd_open(0, 0, "test");
    if (fd < 0)
        T_SKIP("userfaultfd: %s", migr_last_error());

    /* Two regions of one shared memfd mapping, with a hole between them. */
    const size_t sz = 64 * MIGR_PAGE_SIZE;
    int mfd = memfd_create("uffd-test", MFD_CLOEXEC);
    T_ASSERT(mfd >= 0 && ftruncate(mfd, (off_t)(3 * sz)) == 0);
    uint8_t *m = mmap(NULL, 3 * sz, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    T_ASSERT(m != MAP_FAILED);
    struct migr_hv hv = {.nregions = 2};
    hv.regions[0] = (struct migr_hv_region){.gpa = 0, .size = sz, .host = m, .memfd = mfd};
    hv.regions[1] = (struct migr_hv_region){.gpa = 2 * sz, .size = sz, .host = m + 2 * sz, .memfd = mfd,
                                            .memfd_off = 2 * sz};

    /* post-copy's registration: MISSING, UFFDIO_COPY needed. */
    T_OK(uffd_register_ram(fd, &hv, UFFDIO_REGISTER_MODE_MISSING, 1ull << _UFFDIO_COPY, "test"));

    /* A second userfaultfd cannot take region 0; it names the region, and
     * a caller that needs an ioctl nobody offers is told which one. */
    int fd2 = uffd_open(0, UFFD_OPEN_USER_MODE_OK, "test2");
    T_ASSERT(fd2 >= 0);
    T_EQ(uffd_register_ram(fd2, &hv, UFFDIO_REGISTER_MODE_MISSING, 0, "test2"), -EBUSY);
    T_ASSERT(strstr(migr_last_error(), "test2: UFFDIO_REGISTER guest RAM region 0"));

    uffd_unregister_ram(fd, &hv);
    T_EQ(uffd_register_ram(fd2, &hv, UFFDIO_REGISTER_MODE_MISSING, 1ull << 63, "test2"), -ENOTSUP);
    T_ASSERT(strstr(migr_last_error(), "not offered for guest RAM region 0"));
    /* ... and that refusal left region 0 unregistered: fd can take it again. */
    T_OK(uffd_register_ram(fd, &hv, UFFDIO_REGISTER_MODE_MISSING, 0, "test"));
    uffd_unregister_ram(fd, &hv);
    close(fd2);
    close(fd);

    /* The trackers' write protection of a whole guest, where offered. */
    fd = uffd_open(UFFD_FEATURE_WP_HUGETLBFS_SHMEM, UFFD_OPEN_USER_MODE_OK, "wp");
    if (fd >= 0) {
        T_OK(uffd_register_ram(fd, &hv, UFFDIO_REGISTER_MODE_WP, 1ull << _UFFDIO_WRITEPROTECT, "wp"));
        T_OK(uffd_wp_ram(fd, &hv, "wp"));
        T_OK(uffd_wp(fd, m, MIGR_PAGE_SIZE, false));
        m[0] = 1; /* unprotected: does not block */
        uffd_unregister_ram(fd, &hv);
        close(fd);
    } else {
        T_ASSERT(strstr(migr_last_error(), "wp: userfaultfd features"));
    }
    munmap(m, 3 * sz);
    close(mfd);
    return 0;
}
