package runcenv

// SeccompRuntimeDefault names the seccomp profile a pod asks for with
// seccompProfile: {type: RuntimeDefault}.
const SeccompRuntimeDefault = "RuntimeDefault"

// refusedSyscalls are the system calls this package's RuntimeDefault
// profile refuses (EPERM). A container runtime's real default profile is an
// allow-list of several hundred calls, which this package does not carry;
// the calls refused here are the ones such profiles exist to keep from a
// container without capabilities: loading kernel code, mounting and
// namespace changes, tracing other processes, the kernel keyring, clocks,
// swap, reboot, accounting, BPF and perf, handle-based opens and
// userfaultfd. A web server needs none of them, so nginx running under this
// filter shows that the image does not depend on them.
var refusedSyscalls = []string{
	"acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
	"delete_module", "finit_module", "get_kernel_syms", "get_mempolicy", "init_module",
	"ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl",
	"lookup_dcookie", "mbind", "mount", "move_mount", "move_pages", "name_to_handle_at",
	"nfsservctl", "open_by_handle_at", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick",
	"perf_event_open", "pivot_root", "process_vm_readv", "process_vm_writev", "ptrace",
	"query_module", "quotactl", "reboot", "request_key", "set_mempolicy", "setns",
	"settimeofday", "swapoff", "swapon", "sysfs", "syslog", "umount2", "unshare",
	"uselib", "userfaultfd", "ustat", "vm86", "vm86old",
}

// seccompSpec is the runtime spec's linux.seccomp for a profile name
// ("" for none).
func seccompSpec(profile string) map[string]any {
	if profile == "" {
		return nil
	}
	return map[string]any{
		"defaultAction": "SCMP_ACT_ALLOW",
		"architectures": []string{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"},
		"syscalls": []map[string]any{{
			"names":    refusedSyscalls,
			"action":   "SCMP_ACT_ERRNO",
			"errnoRet": 1, // EPERM
		}},
	}
}
