from rust_heads import *
from sklearn.linear_model import LogisticRegression
dev=load('dev_routing'); Ed=E('dev_routing'); tt=load('train_tasktype'); Et=E('train_tasktype')
exam,pchat,prior=parts(dev,Ed)
y=np.array([r['source'].startswith('arena') for r in tt]).astype(int)
isA=np.array([r['source']=='arena-bench-v1' for r in dev]); A=[r for r in dev if r['source']=='arena-bench-v1']
for C in [0.3,1,3]:
    m=LogisticRegression(C=C,max_iter=3000).fit(Et,y); ph=m.predict_proba(Ed)[:,1]
    report(A,ph[isA],f'arena by phard C={C}')
    for d in [0.1,0.2]:
        report(dev,exam+d*pchat*ph,f'  exam+{d}*pchat*phard')
        report(dev,exam+d*pchat*(0.5+ph)/1.5,f'  exam+{d}*pchat*(.5+phard)/1.5')
