from rust_heads import *
from sklearn.linear_model import LogisticRegression
import json,subprocess
dev=load('dev_routing'); Ed=E('dev_routing'); tt=load('train_tasktype'); Et=E('train_tasktype')
exam,pchat,prior=parts(dev,Ed)
y=np.array([r['source'].startswith('arena') for r in tt]).astype(int)
m=LogisticRegression(C=1,max_iter=3000).fit(Et,y); ph=m.predict_proba(Ed)[:,1]
for lo,hi in [(0.0,0.3),(0.05,0.35),(0.1,0.4),(0.0,0.4)]:
    report(dev,(1-pchat)*exam+pchat*(lo+(hi-lo)*ph),f'convex lo={lo} hi={hi}')
# probe
import onnxruntime
