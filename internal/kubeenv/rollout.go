package kubeenv

import (
	"context"
	"errors"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// rolloutPoll is how often the rollout simulator looks at Deployments.
const rolloutPoll = 200 * time.Millisecond

// simulateRollouts runs the rollout simulator until the test ends.
func (e *Env) simulateRollouts() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var lastErr string
		for {
			if err := e.completeRollouts(ctx); err != nil && ctx.Err() == nil && err.Error() != lastErr {
				// Logged once per distinct error: a conflict with a
				// concurrent writer is retried on the next round.
				lastErr = err.Error()
				e.t.Logf("kubeenv: rollout simulator: %v", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(rolloutPoll):
			}
		}
	}()
	e.t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// completeRollouts gives every Deployment that needs it the status of a
// finished rollout.
func (e *Env) completeRollouts(ctx context.Context) error {
	var list appsv1.DeploymentList
	if err := e.Client.List(ctx, &list); err != nil {
		return err
	}
	var errs []error
	for i := range list.Items {
		d := &list.Items[i]
		want := RolledOutStatus(d, metav1.Now())
		if statusDone(d.Status, want) {
			continue
		}
		d.Status = want
		if err := e.Client.Status().Update(ctx, d); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RolledOutStatus is the status the deployment controller writes once every
// replica of the Deployment's current generation is updated and available.
func RolledOutStatus(d *appsv1.Deployment, now metav1.Time) appsv1.DeploymentStatus {
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	return appsv1.DeploymentStatus{
		ObservedGeneration: d.Generation,
		Replicas:           replicas,
		UpdatedReplicas:    replicas,
		ReadyReplicas:      replicas,
		AvailableReplicas:  replicas,
		Conditions: []appsv1.DeploymentCondition{
			{
				Type:               appsv1.DeploymentAvailable,
				Status:             corev1.ConditionTrue,
				Reason:             "MinimumReplicasAvailable",
				Message:            "Deployment has minimum availability.",
				LastUpdateTime:     now,
				LastTransitionTime: now,
			},
			{
				Type:               appsv1.DeploymentProgressing,
				Status:             corev1.ConditionTrue,
				Reason:             "NewReplicaSetAvailable",
				Message:            "ReplicaSet " + d.Name + " has successfully progressed (simulated by kubeenv).",
				LastUpdateTime:     now,
				LastTransitionTime: now,
			},
		},
	}
}

// statusDone reports whether have already describes the rollout of want.
func statusDone(have, want appsv1.DeploymentStatus) bool {
	if have.ObservedGeneration != want.ObservedGeneration || have.Replicas != want.Replicas ||
		have.UpdatedReplicas != want.UpdatedReplicas || have.ReadyReplicas != want.ReadyReplicas ||
		have.AvailableReplicas != want.AvailableReplicas || have.UnavailableReplicas != 0 {
		return false
	}
	for _, wc := range want.Conditions {
		found := false
		for _, hc := range have.Conditions {
			if hc.Type == wc.Type && hc.Status == wc.Status && hc.Reason == wc.Reason {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
