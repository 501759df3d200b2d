"""Job paths of the previous release, kept for one release.

RQ stores a job's function by dotted path, so jobs enqueued before the upgrade name `console.jobs.<x>`.
These modules only re-export the feature jobs (`console.blueprints.<feature>.jobs`); new jobs are enqueued
under the new paths. Remove this package once no job of the old release can be waiting.
"""
