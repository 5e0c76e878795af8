package runcenv

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// FromPodSpec reads the Security a kubelet would give the container named
// container (the first one when empty) of a pod spec: the user and group
// (container over pod security context), read-only root, no new
// privileges, capabilities, the seccomp profile (RuntimeDefault as this
// package's profile, see refusedSyscalls) and the emptyDir mounts. Settings
// that are not applied here are an error rather than silently dropped;
// probes and ports are for the caller to check over HTTP.
func FromPodSpec(spec *corev1.PodSpec, container string) (Security, error) {
	var c *corev1.Container
	for i := range spec.Containers {
		if container == "" || spec.Containers[i].Name == container {
			c = &spec.Containers[i]
			break
		}
	}
	if c == nil {
		return Security{}, fmt.Errorf("pod spec has no container %q", container)
	}
	var sec Security
	psc := spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	csc := c.SecurityContext
	if csc == nil {
		csc = &corev1.SecurityContext{}
	}
	pick := func(a, b *int64) *int64 {
		if a != nil {
			return a
		}
		return b
	}
	uid, gid := pick(csc.RunAsUser, psc.RunAsUser), pick(csc.RunAsGroup, psc.RunAsGroup)
	if uid == nil {
		return Security{}, fmt.Errorf("container %s: no runAsUser (the image's user is not read here)", c.Name)
	}
	if gid == nil {
		gid = uid
	}
	nonRoot := csc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = psc.RunAsNonRoot
	}
	if nonRoot != nil && *nonRoot && *uid == 0 {
		return Security{}, fmt.Errorf("container %s: runAsNonRoot with runAsUser 0: kubelet refuses to start it", c.Name)
	}
	sec.UID, sec.GID = uint32(*uid), uint32(*gid)
	if len(psc.SupplementalGroups) > 0 || psc.FSGroup != nil {
		return Security{}, fmt.Errorf("container %s: supplementalGroups and fsGroup are not applied here", c.Name)
	}
	sec.ReadOnlyRoot = csc.ReadOnlyRootFilesystem != nil && *csc.ReadOnlyRootFilesystem
	sec.NoNewPrivileges = csc.AllowPrivilegeEscalation != nil && !*csc.AllowPrivilegeEscalation
	if csc.Privileged != nil && *csc.Privileged {
		return Security{}, fmt.Errorf("container %s: privileged containers are not run here", c.Name)
	}
	if caps := csc.Capabilities; caps == nil || !slices.Contains(caps.Drop, "ALL") {
		return Security{}, fmt.Errorf("container %s: only capabilities {drop: [ALL]} (plus adds) are run here", c.Name)
	} else {
		sec.Capabilities = []string{}
		for _, a := range caps.Add {
			sec.Capabilities = append(sec.Capabilities, "CAP_"+string(a))
		}
	}
	profile := psc.SeccompProfile
	if csc.SeccompProfile != nil {
		profile = csc.SeccompProfile
	}
	if profile != nil {
		switch profile.Type {
		case corev1.SeccompProfileTypeRuntimeDefault:
			sec.Seccomp = SeccompRuntimeDefault
		case corev1.SeccompProfileTypeUnconfined:
		default:
			return Security{}, fmt.Errorf("container %s: seccomp profile %s is not applied here", c.Name, profile.Type)
		}
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			return Security{}, fmt.Errorf("container %s: mount of unknown volume %q", c.Name, m.Name)
		}
		if v.EmptyDir == nil {
			return Security{}, fmt.Errorf("container %s: volume %q is not an emptyDir; only emptyDirs are made here", c.Name, m.Name)
		}
		if m.SubPath != "" || m.ReadOnly {
			return Security{}, fmt.Errorf("container %s: mount %q: subPath and readOnly mounts are not made here", c.Name, m.Name)
		}
		sec.EmptyDirs = append(sec.EmptyDirs, m.MountPath)
	}
	return sec, nil
}
